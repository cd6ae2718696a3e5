//! The schedule API (admin token): create, list, inspect, pause, resume,
//! fire now and delete schedules.

use jobs::protocol::routes::{self, schedule_path};
use jobs::protocol::ScheduleStatus;
use jobs::schedule::NewSchedule;
use reqwest::Method;

use crate::error::{ClientError, TokenKind};
use crate::http::CoordinatorClient;

impl CoordinatorClient {
    pub async fn create_schedule(&self, new: &NewSchedule) -> Result<ScheduleStatus, ClientError> {
        self.call(Method::POST, routes::SCHEDULES, Some(new), TokenKind::Admin)
            .await
    }

    pub async fn list_schedules(&self) -> Result<Vec<ScheduleStatus>, ClientError> {
        self.call::<(), _>(Method::GET, routes::SCHEDULES, None, TokenKind::Admin)
            .await
    }

    pub async fn schedule(&self, name: &str) -> Result<ScheduleStatus, ClientError> {
        let route = schedule_path(routes::SCHEDULE, name);
        self.call::<(), _>(Method::GET, &route, None, TokenKind::Admin)
            .await
    }

    pub async fn pause_schedule(&self, name: &str) -> Result<ScheduleStatus, ClientError> {
        let route = schedule_path(routes::SCHEDULE_PAUSE, name);
        self.call::<(), _>(Method::POST, &route, None, TokenKind::Admin)
            .await
    }

    pub async fn resume_schedule(&self, name: &str) -> Result<ScheduleStatus, ClientError> {
        let route = schedule_path(routes::SCHEDULE_RESUME, name);
        self.call::<(), _>(Method::POST, &route, None, TokenKind::Admin)
            .await
    }

    /// Makes the schedule due now; the leader fires it at its next tick.
    pub async fn run_schedule_now(&self, name: &str) -> Result<ScheduleStatus, ClientError> {
        let route = schedule_path(routes::SCHEDULE_RUN, name);
        self.call::<(), _>(Method::POST, &route, None, TokenKind::Admin)
            .await
    }

    pub async fn delete_schedule(&self, name: &str) -> Result<(), ClientError> {
        let route = schedule_path(routes::SCHEDULE, name);
        self.send_raw::<()>(
            Method::DELETE,
            &route,
            None,
            TokenKind::Admin,
            Some(self.request_timeout),
        )
        .await
        .map(|_| ())
    }
}

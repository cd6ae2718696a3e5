//! [`JudgeStore`] on Postgres.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{int, retry_busy, PostgresStore};
use crate::store::judge::{ChildJob, JudgeStage, JudgeStore, NewJudgeItem, ReadyJudgeItem};
use crate::store::rows::{failure_kind_of, job_state};
use crate::store::StoreError;

fn parse_seqs(text: Option<String>) -> Result<Vec<u64>, StoreError> {
    match text {
        None => Ok(Vec::new()),
        Some(t) => serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
            table: "judge_items",
            reason: format!("wait_seqs {t:?} is not a list of seqs: {e}"),
        }),
    }
}

fn ints(values: &[u64]) -> Vec<i64> {
    values.iter().map(|v| int(*v)).collect()
}

#[async_trait]
impl JudgeStore for PostgresStore {
    async fn insert_judge_items(
        &self,
        job_id: Uuid,
        items: &[NewJudgeItem],
    ) -> Result<(), StoreError> {
        let doc_index: Vec<i64> = items.iter().map(|i| int(i.doc_index)).collect();
        let wait_seq: Vec<i64> = items
            .iter()
            .map(|i| i.wait_seqs.iter().max().map_or(-1, |s| int(*s)))
            .collect();
        let wait_seqs: Vec<Option<String>> = items
            .iter()
            .map(|i| {
                (i.wait_seqs.len() > 1)
                    .then(|| serde_json::to_string(&i.wait_seqs).unwrap_or_default())
            })
            .collect();
        let item_json: Vec<&str> = items.iter().map(|i| i.item_json.as_str()).collect();
        sqlx::query(include_str!("judge_items_insert.sql"))
            .bind(job_id)
            .bind(&doc_index)
            .bind(&wait_seq)
            .bind(&wait_seqs)
            .bind(&item_json)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn reset_judge_items(&self, job_id: Uuid) -> Result<(), StoreError> {
        sqlx::query(include_str!("judge_items_reset.sql"))
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn judged_jobs(&self) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(include_str!("judge_jobs.sql"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<Uuid, _>(0).map_err(StoreError::from))
            .collect()
    }

    async fn ready_judge_items(
        &self,
        job_id: Uuid,
        limit: u32,
    ) -> Result<Vec<ReadyJudgeItem>, StoreError> {
        let rows = sqlx::query(include_str!("judge_ready.sql"))
            .bind(job_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ReadyJudgeItem {
                    doc_index: u64::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0),
                    wait_seqs: parse_seqs(r.try_get(1)?)?,
                    item_json: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn unfinished_shards(&self, job_id: Uuid, seqs: &[u64]) -> Result<Vec<u64>, StoreError> {
        let rows = sqlx::query(include_str!("judge_unfinished.sql"))
            .bind(job_id)
            .bind(ints(seqs))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(u64::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0)))
            .collect()
    }

    async fn rewait_judge_item(
        &self,
        job_id: Uuid,
        doc_index: u64,
        seq: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(include_str!("judge_rewait.sql"))
            .bind(job_id)
            .bind(int(doc_index))
            .bind(int(seq))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn commit_judging(
        &self,
        parent: Uuid,
        stages: &[JudgeStage],
        done: &[u64],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        retry_busy("commit judge requests", || async move {
            let mut tx = self.pool.begin().await?;
            for stage in stages {
                let existing: Option<Uuid> =
                    sqlx::query_scalar(include_str!("judge_child_find.sql"))
                        .bind(parent)
                        .bind(&stage.name)
                        .fetch_optional(&mut *tx)
                        .await?;
                let shards = int(stage.shards.len() as u64);
                let child = match existing {
                    Some(id) => id,
                    None => {
                        let id = Uuid::now_v7();
                        sqlx::query(include_str!("judge_child_insert.sql"))
                            .bind(id)
                            .bind(&stage.name)
                            .bind(&stage.spec_json)
                            .bind(&stage.spec_hash)
                            .bind(stage.backend.as_str())
                            .bind(now)
                            .bind(&stage.model)
                            .bind(shards)
                            .bind(parent)
                            .execute(&mut *tx)
                            .await?;
                        id
                    }
                };
                sqlx::query(include_str!("judge_child_update.sql"))
                    .bind(child)
                    .bind(int(stage.requests))
                    .bind(int(stage.cached))
                    .bind(shards)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let next: i64 = sqlx::query_scalar(include_str!("judge_child_next_seq.sql"))
                    .bind(child)
                    .fetch_one(&mut *tx)
                    .await?;
                if !stage.shards.is_empty() {
                    let ids: Vec<Uuid> = stage.shards.iter().map(|s| s.id).collect();
                    let seqs: Vec<i64> = (0..stage.shards.len() as i64).map(|i| next + i).collect();
                    let max_attempts: Vec<i64> = stage
                        .shards
                        .iter()
                        .map(|s| i64::from(s.max_attempts.max(1)))
                        .collect();
                    let requests: Vec<&str> = stage
                        .shards
                        .iter()
                        .map(|s| s.requests_json.as_str())
                        .collect();
                    let counts: Vec<i64> =
                        stage.shards.iter().map(|s| int(s.request_count)).collect();
                    sqlx::query(include_str!("shard_insert.sql"))
                        .bind(child)
                        .bind(&ids)
                        .bind(&seqs)
                        .bind(&max_attempts)
                        .bind(&requests)
                        .bind(&counts)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let marked = sqlx::query(include_str!("judge_items_done.sql"))
                .bind(parent)
                .bind(ints(done))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if marked != done.len() as u64 {
                // Dropping the transaction undoes the shards too.
                return Err(StoreError::Conflict(format!(
                    "{} of {} documents of job {parent} were judged meanwhile",
                    done.len() as u64 - marked,
                    done.len()
                )));
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn child_jobs(&self, parent: Uuid) -> Result<Vec<ChildJob>, StoreError> {
        let rows = sqlx::query(include_str!("judge_children.sql"))
            .bind(parent)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ChildJob {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    state: job_state(&r.try_get::<String, _>("state")?)?,
                    error: r.try_get("error")?,
                    error_kind: failure_kind_of(r.try_get("error_kind")?)?,
                })
            })
            .collect()
    }

    async fn reopen_children(&self, parent: Uuid, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let reopened = sqlx::query(include_str!("judge_children_reopen.sql"))
            .bind(parent)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(reopened.rows_affected())
    }

    async fn complete_if_done(&self, job_id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(include_str!("job_complete_if_done.sql"))
            .bind(vec![job_id])
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn orphaned_children(&self) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(include_str!("judge_orphans.sql"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<Uuid, _>(0).map_err(StoreError::from))
            .collect()
    }
}

//! [`JudgeStore`] on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{ms, parse_uuid, SqliteStore};
use crate::store::judge::{ChildJob, JudgeStage, JudgeStore, NewJudgeItem, ReadyJudgeItem};
use crate::store::rows::{failure_kind_of, job_state};
use crate::store::StoreError;

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A list of seqs as the JSON array the SQL reads with `json_each`.
fn seqs_json(seqs: &[u64]) -> String {
    serde_json::to_string(seqs).unwrap_or_else(|_| "[]".to_string())
}

fn parse_seqs(text: Option<String>) -> Result<Vec<u64>, StoreError> {
    match text {
        None => Ok(Vec::new()),
        Some(t) => serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
            table: "judge_items",
            reason: format!("wait_seqs {t:?} is not a list of seqs: {e}"),
        }),
    }
}

#[async_trait]
impl JudgeStore for SqliteStore {
    async fn insert_judge_items(
        &self,
        job_id: Uuid,
        items: &[NewJudgeItem],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let job = job_id.to_string();
        for item in items {
            let wait_seq = item.wait_seqs.iter().max().map_or(-1, |s| int(*s));
            let wait_seqs = (item.wait_seqs.len() > 1).then(|| seqs_json(&item.wait_seqs));
            sqlx::query(include_str!("judge_items_insert.sql"))
                .bind(&job)
                .bind(int(item.doc_index))
                .bind(wait_seq)
                .bind(wait_seqs)
                .bind(&item.item_json)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn reset_judge_items(&self, job_id: Uuid) -> Result<(), StoreError> {
        sqlx::query(include_str!("judge_items_reset.sql"))
            .bind(job_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn judged_jobs(&self) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(include_str!("judge_jobs.sql"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| parse_uuid("jobs", &r.try_get::<String, _>(0)?))
            .collect()
    }

    async fn ready_judge_items(
        &self,
        job_id: Uuid,
        limit: u32,
    ) -> Result<Vec<ReadyJudgeItem>, StoreError> {
        let rows = sqlx::query(include_str!("judge_ready.sql"))
            .bind(job_id.to_string())
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
            .bind(job_id.to_string())
            .bind(seqs_json(seqs))
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
            .bind(job_id.to_string())
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
        let mut tx = self.begin_write().await?;
        let parent_text = parent.to_string();
        for stage in stages {
            let existing: Option<String> = sqlx::query_scalar(include_str!("judge_child_find.sql"))
                .bind(&parent_text)
                .bind(&stage.name)
                .fetch_optional(&mut *tx)
                .await?;
            let shards = stage.shards.len() as u64;
            let child = match existing {
                Some(id) => {
                    sqlx::query(include_str!("judge_child_update.sql"))
                        .bind(&id)
                        .bind(int(stage.requests))
                        .bind(int(stage.cached))
                        .bind(int(shards))
                        .bind(ms(now))
                        .execute(&mut *tx)
                        .await?;
                    id
                }
                None => {
                    let id = Uuid::now_v7().to_string();
                    sqlx::query(include_str!("judge_child_insert.sql"))
                        .bind(&id)
                        .bind(&stage.name)
                        .bind(&stage.spec_json)
                        .bind(&stage.spec_hash)
                        .bind(stage.backend.as_str())
                        .bind(ms(now))
                        .bind(&stage.model)
                        .bind(int(shards))
                        .bind(&parent_text)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(include_str!("judge_child_update.sql"))
                        .bind(&id)
                        .bind(int(stage.requests))
                        .bind(int(stage.cached))
                        .bind(int(shards))
                        .bind(ms(now))
                        .execute(&mut *tx)
                        .await?;
                    id
                }
            };
            let next: i64 = sqlx::query_scalar(include_str!("judge_child_next_seq.sql"))
                .bind(&child)
                .fetch_one(&mut *tx)
                .await?;
            for (i, shard) in stage.shards.iter().enumerate() {
                sqlx::query(include_str!("shard_insert.sql"))
                    .bind(shard.id.to_string())
                    .bind(&child)
                    .bind(next + i as i64)
                    .bind(i64::from(shard.max_attempts.max(1)))
                    .bind(&shard.requests_json)
                    .bind(int(shard.request_count))
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let marked = sqlx::query(include_str!("judge_items_done.sql"))
            .bind(&parent_text)
            .bind(seqs_json(done))
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
    }

    async fn child_jobs(&self, parent: Uuid) -> Result<Vec<ChildJob>, StoreError> {
        let rows = sqlx::query(include_str!("judge_children.sql"))
            .bind(parent.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ChildJob {
                    id: parse_uuid("jobs", &r.try_get::<String, _>("id")?)?,
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
            .bind(parent.to_string())
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
        Ok(reopened.rows_affected())
    }

    async fn complete_if_done(&self, job_id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(include_str!("job_complete_if_done.sql"))
            .bind(job_id.to_string())
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn orphaned_children(&self) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(include_str!("judge_orphans.sql"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| parse_uuid("jobs", &r.try_get::<String, _>(0)?))
            .collect()
    }
}

-- LLM-as-judge. A judge metric's requests run as a child job of the judged
-- job (`parent_id`), with the judge model's backend and model, so that
-- claims, leases and provider batches treat them like any other shards.
-- `judge_items` keeps, per document of a judged job, what grading it needs
-- until its outputs exist.
ALTER TABLE jobs ADD COLUMN parent_id uuid REFERENCES jobs (id) ON DELETE CASCADE;
-- One judge job per judge metric of a job, whichever replica makes it.
CREATE UNIQUE INDEX jobs_parent ON jobs (parent_id, name) WHERE parent_id IS NOT NULL;

CREATE TABLE judge_items (
    job_id     uuid    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    doc_index  bigint  NOT NULL,
    -- 'waiting' for outputs; 'done' once its judge requests are planned (or
    -- it has no output to judge).
    state      text    NOT NULL CHECK (state IN ('waiting', 'done')),
    -- The last shard (seq) holding one of the document's requests; -1 when
    -- every output was cached at planning. The item is looked at once that
    -- shard has finished.
    wait_seq   bigint  NOT NULL,
    -- Every such shard when there are several (a JSON array), else NULL.
    wait_seqs  text,
    item_json  text    NOT NULL,
    PRIMARY KEY (job_id, doc_index)
);
CREATE INDEX judge_items_waiting ON judge_items (job_id, wait_seq) WHERE state = 'waiting';

"""The store's schema, as the list of migrations that build it.

A project made by any earlier version opens with its data intact: each
migration upgrades version n - 1 to n in one transaction (see
`Database.migrate`). Never edit a released entry; add the next one.
"""

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE classes (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        position INTEGER NOT NULL
    );
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,          -- relative to the image root, '/' separated
        size_bytes INTEGER NOT NULL,
        sha1 TEXT NOT NULL UNIQUE,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        cache_index INTEGER NOT NULL UNIQUE,
        gold TEXT,                          -- hidden oracle label (evaluation only)
        status TEXT NOT NULL DEFAULT 'ok',  -- 'ok' | 'missing'
        label_class_id INTEGER REFERENCES classes(id),
        added_at TEXT NOT NULL
    );
    CREATE INDEX items_label ON items(label_class_id);
    CREATE TABLE labels (                   -- append-only history
        id INTEGER PRIMARY KEY,
        item_id INTEGER NOT NULL REFERENCES items(id),
        class_id INTEGER REFERENCES classes(id),   -- NULL: label cleared
        previous_class_id INTEGER REFERENCES classes(id),
        author TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL,
        undone_at TEXT
    );
    CREATE INDEX labels_item ON labels(item_id);
    CREATE TABLE skipped (
        path TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        seen_at TEXT NOT NULL
    );
    CREATE TABLE rounds (
        id INTEGER PRIMARY KEY,
        sampler TEXT NOT NULL,
        budget INTEGER NOT NULL,
        seed INTEGER NOT NULL,
        status TEXT NOT NULL,               -- running | done | failed | cancelled
        settings TEXT NOT NULL,
        n_labeled INTEGER,
        n_pool INTEGER,
        progress TEXT,
        timings TEXT,
        metrics TEXT,
        error TEXT,
        pid INTEGER,
        created_at TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE TABLE scores (
        round_id INTEGER NOT NULL REFERENCES rounds(id),
        item_id INTEGER NOT NULL REFERENCES items(id),
        score REAL NOT NULL,
        rank INTEGER,                       -- 1..budget for the queue, NULL otherwise
        PRIMARY KEY (round_id, item_id)
    );
    CREATE INDEX scores_rank ON scores(round_id, rank);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    """,
    # 2: the app. An action groups the label rows one user gesture wrote (a
    # keypress, a grid batch, a lasso selection) so undo reverts the gesture
    # whole; skips are actions too, so undo brings a skipped image back.
    # Existing label rows become one action each, with the same ids.
    2: """
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,                 -- 'label' | 'skip'
        author TEXT NOT NULL,
        created_at TEXT NOT NULL,
        undone_at TEXT
    );
    INSERT INTO actions(id, kind, author, created_at, undone_at)
        SELECT id, 'label', author, created_at, undone_at FROM labels;
    ALTER TABLE labels ADD COLUMN action_id INTEGER REFERENCES actions(id);
    UPDATE labels SET action_id = id;
    CREATE INDEX labels_action ON labels(action_id);
    CREATE TABLE skips (                    -- 'not now': to the back of this round's order
        action_id INTEGER NOT NULL REFERENCES actions(id),
        item_id INTEGER NOT NULL REFERENCES items(id),
        round_id INTEGER                    -- the queue it was skipped in (NULL: before any round)
    );
    CREATE INDEX skips_item ON skips(item_id);
    CREATE TABLE priorities (               -- pushed to the front of the queue by the user
        item_id INTEGER PRIMARY KEY REFERENCES items(id),
        position INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    ALTER TABLE rounds ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: the task model. Its top class and confidence for each item a round
    # scored, stored beside the score so the suggestion and the queue it
    # belongs to are swapped in by the same transaction.
    3: """
    ALTER TABLE scores ADD COLUMN suggestion_class_id INTEGER;
    ALTER TABLE scores ADD COLUMN confidence REAL;
    """,
    # 4: the audit. A few picks of each batch are drawn uniformly at random
    # from the pool instead of by the sampler (loop/audit.py), so the task
    # model's accuracy can be estimated honestly on the user's own labels.
    # Rows of earlier rounds are sampler picks (0).
    4: """
    ALTER TABLE scores ADD COLUMN audit INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: a gesture's token. The Label page gives every button of every render
    # its own token and the action records it, so a press that reaches the
    # server twice (a retried or replayed message) is written once.
    5: """
    ALTER TABLE actions ADD COLUMN token TEXT;
    CREATE UNIQUE INDEX actions_token ON actions(token) WHERE token IS NOT NULL;
    """,
    # 6: teams. An image shown to an annotator is leased to them until it
    # expires (unix time, the app servers' clocks), so another annotator's
    # page passes it by; who gave each label was recorded from the start
    # (labels.author, actions.author).
    6: """
    CREATE TABLE leases (
        item_id INTEGER PRIMARY KEY REFERENCES items(id),
        annotator TEXT NOT NULL,
        expires_at REAL NOT NULL,
        taken_at TEXT NOT NULL
    );
    CREATE INDEX leases_annotator ON leases(annotator);
    CREATE INDEX labels_author ON labels(author);
    """,
}
SCHEMA_VERSION = max(MIGRATIONS)

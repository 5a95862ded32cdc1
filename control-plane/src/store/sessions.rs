use super::{Page, Store, StoreError, decode_cursor, encode_cursor, with_pool};

/// A recorded session, as listed for admins and auditors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Session id (a UUID chosen by the node).
    pub id: String,
    /// The node that served it.
    pub node_id: String,
    /// Who.
    pub identity: String,
    /// person | agent | service.
    pub identity_kind: String,
    /// Their groups.
    pub groups: Vec<String>,
    /// Which target.
    pub target: String,
    /// From where.
    pub client_addr: String,
    /// Over TLS?
    pub tls: bool,
    /// Wire protocol.
    pub protocol: String,
    /// The client's `application_name`.
    pub application_name: String,
    /// The token's id.
    pub token_id: String,
    /// Start, µs.
    pub started_at: i64,
    /// End, µs, once ended.
    pub ended_at: Option<i64>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// Statements recorded so far.
    pub statements: i64,
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Only this identity.
    pub identity: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only this kind of identity (`person`, `agent`, `service`).
    pub identity_kind: Option<String>,
    /// Only sessions whose identity had this group.
    pub group: Option<String>,
    /// Only sessions started at or after this time, µs.
    pub started_from: Option<i64>,
    /// Only sessions started before this time, µs.
    pub started_before: Option<i64>,
    /// Only sessions with a statement of this decision (`allow`, `deny`,
    /// `approval`).
    pub decision: Option<String>,
    /// Only sessions with a statement containing this text
    /// (case-insensitive).
    pub text: Option<String>,
    /// Page size (1..=500).
    pub limit: u32,
    /// Resume after this cursor.
    pub cursor: Option<String>,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    bool,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    i64,
);

macro_rules! columns {
    () => {
        "id, node_id, identity, identity_kind, groups, target, client_addr, tls, protocol, \
         application_name, token_id, started_at, ended_at, end_reason, statements"
    };
}

fn from_row(r: Row) -> SessionRow {
    SessionRow {
        id: r.0,
        node_id: r.1,
        identity: r.2,
        identity_kind: r.3,
        groups: serde_json::from_str(&r.4).unwrap_or_default(),
        target: r.5,
        client_addr: r.6,
        tls: r.7,
        protocol: r.8,
        application_name: r.9,
        token_id: r.10,
        started_at: r.11,
        ended_at: r.12,
        end_reason: r.13,
        statements: r.14,
    }
}

/// A LIKE pattern matching values that contain `needle` literally: `%`,
/// `_` and the escape character itself are escaped (with `\`).
fn contains_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Store {
    /// Sessions, newest first, narrowed by `filter`. Statement filters
    /// (decision, text) look into the session's events.
    pub async fn list_sessions(
        &self,
        filter: &SessionFilter,
    ) -> Result<Page<SessionRow>, StoreError> {
        let limit = filter.limit.clamp(1, 500);
        // A cursor far in the future starts at the newest session.
        let (at, id) = match &filter.cursor {
            Some(c) => decode_cursor(c)?,
            None => (i64::MAX, String::new()),
        };
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM sessions \
             WHERE (started_at < $1 OR (started_at = $1 AND id < $2)) \
               AND ($3 IS NULL OR identity = $3) AND ($4 IS NULL OR target = $4) \
               AND ($6 IS NULL OR identity_kind = $6) \
               AND ($7 IS NULL OR groups LIKE $7 ESCAPE '\\') \
               AND ($8 IS NULL OR started_at >= $8) AND ($9 IS NULL OR started_at < $9) \
               AND ($10 IS NULL AND $11 IS NULL OR EXISTS (SELECT 1 FROM session_events e \
                    WHERE e.session_id = sessions.id AND e.kind = 'statement' \
                      AND ($10 IS NULL OR e.decision = $10) \
                      AND ($11 IS NULL OR LOWER(e.statement) LIKE LOWER($11) ESCAPE '\\'))) \
             ORDER BY started_at DESC, id DESC LIMIT $5"
        );
        let group = filter
            .group
            .as_deref()
            .map(|g| contains_pattern(&serde_json::to_string(g).unwrap_or_default()));
        let text = filter.text.as_deref().map(contains_pattern);
        let rows: Vec<Row> = with_pool!(self, |p| sqlx::query_as(sql)
            .bind(at)
            .bind(&id)
            .bind(filter.identity.as_deref())
            .bind(filter.target.as_deref())
            .bind(i64::from(limit) + 1)
            .bind(filter.identity_kind.as_deref())
            .bind(group.as_deref())
            .bind(filter.started_from)
            .bind(filter.started_before)
            .bind(filter.decision.as_deref())
            .bind(text.as_deref())
            .fetch_all(p)
            .await)?;
        let mut items: Vec<_> = rows.into_iter().map(from_row).collect();
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|s| encode_cursor(s.started_at, &s.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// One session by id.
    pub async fn get_session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM sessions WHERE id = $1");
        let row: Option<Row> = with_pool!(self, |p| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(p)
            .await)?;
        Ok(row.map(from_row))
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn like_patterns_match_text_literally() {
        assert_eq!(contains_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}

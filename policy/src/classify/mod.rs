//! Classification: what each statement of a message does, from its parse
//! tree. The result is plain data that rules are matched against.

pub(crate) mod names;
mod statement;
mod walk;

use serde::Serialize;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

pub use self::names::{FunctionName, TableName};
use crate::lexer::{self, LexError};

/// What kind of statement, or of effect inside one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// SELECT, VALUES, TABLE and read-only WITH: reading rows.
    Select,
    /// SHOW.
    Show,
    /// EXPLAIN without ANALYZE (nothing runs).
    Explain,
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE (also a MERGE clause that deletes).
    Delete,
    /// MERGE.
    Merge,
    /// BEGIN / START TRANSACTION.
    Begin,
    /// COMMIT / END.
    Commit,
    /// ROLLBACK, also ROLLBACK TO SAVEPOINT.
    Rollback,
    /// SAVEPOINT.
    Savepoint,
    /// RELEASE SAVEPOINT.
    Release,
    /// SET of a configuration parameter (also SET TIME ZONE).
    Set,
    /// RESET of a configuration parameter (or ALL).
    Reset,
    /// SET ROLE / RESET ROLE.
    SetRole,
    /// SET / RESET SESSION AUTHORIZATION.
    SetSessionAuthorization,
    /// SET TRANSACTION.
    SetTransaction,
    /// COPY ... TO (STDOUT, a file or a program).
    CopyTo,
    /// COPY ... FROM (STDIN, a file or a program).
    CopyFrom,
    /// Any CREATE, including CREATE TABLE AS and SELECT INTO.
    Create,
    /// Any ALTER (including ALTER SYSTEM).
    Alter,
    /// Any DROP.
    Drop,
    /// TRUNCATE.
    Truncate,
    /// GRANT.
    Grant,
    /// REVOKE.
    Revoke,
    /// COMMENT ON.
    Comment,
    /// DO (anonymous code).
    Do,
    /// CALL.
    Call,
    /// SQL-level PREPARE.
    Prepare,
    /// SQL-level EXECUTE.
    Execute,
    /// DEALLOCATE.
    Deallocate,
    /// LISTEN.
    Listen,
    /// NOTIFY.
    Notify,
    /// UNLISTEN.
    Unlisten,
    /// LOCK.
    Lock,
    /// VACUUM.
    Vacuum,
    /// ANALYZE.
    Analyze,
    /// DISCARD.
    Discard,
    /// Anything else the classifier does not model.
    Other,
}

impl Kind {
    /// Whether a statement of this kind leaves the database as it was:
    /// reads, transaction control and session settings. Everything else is
    /// a write for the audit trail's delivery guarantee.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Self::Select
                | Self::Show
                | Self::Explain
                | Self::Begin
                | Self::Commit
                | Self::Rollback
                | Self::Savepoint
                | Self::Release
                | Self::Set
                | Self::Reset
                | Self::SetTransaction
        )
    }

    /// How messages name the kind: the SQL keyword(s).
    pub fn sql(self) -> &'static str {
        match self {
            Self::Select => "SELECT",
            Self::Show => "SHOW",
            Self::Explain => "EXPLAIN",
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Merge => "MERGE",
            Self::Begin => "BEGIN",
            Self::Commit => "COMMIT",
            Self::Rollback => "ROLLBACK",
            Self::Savepoint => "SAVEPOINT",
            Self::Release => "RELEASE",
            Self::Set => "SET",
            Self::Reset => "RESET",
            Self::SetRole => "SET ROLE",
            Self::SetSessionAuthorization => "SET SESSION AUTHORIZATION",
            Self::SetTransaction => "SET TRANSACTION",
            Self::CopyTo => "COPY TO",
            Self::CopyFrom => "COPY FROM",
            Self::Create => "CREATE",
            Self::Alter => "ALTER",
            Self::Drop => "DROP",
            Self::Truncate => "TRUNCATE",
            Self::Grant => "GRANT",
            Self::Revoke => "REVOKE",
            Self::Comment => "COMMENT",
            Self::Do => "DO",
            Self::Call => "CALL",
            Self::Prepare => "PREPARE",
            Self::Execute => "EXECUTE",
            Self::Deallocate => "DEALLOCATE",
            Self::Listen => "LISTEN",
            Self::Notify => "NOTIFY",
            Self::Unlisten => "UNLISTEN",
            Self::Lock => "LOCK",
            Self::Vacuum => "VACUUM",
            Self::Analyze => "ANALYZE",
            Self::Discard => "DISCARD",
            Self::Other => "this statement",
        }
    }

    /// The name used in policies and audit records.
    pub fn name(self) -> &'static str {
        KIND_NAMES
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("other", |(_, n)| n)
    }
}

const KIND_NAMES: &[(Kind, &str)] = &[
    (Kind::Select, "select"),
    (Kind::Show, "show"),
    (Kind::Explain, "explain"),
    (Kind::Insert, "insert"),
    (Kind::Update, "update"),
    (Kind::Delete, "delete"),
    (Kind::Merge, "merge"),
    (Kind::Begin, "begin"),
    (Kind::Commit, "commit"),
    (Kind::Rollback, "rollback"),
    (Kind::Savepoint, "savepoint"),
    (Kind::Release, "release"),
    (Kind::Set, "set"),
    (Kind::Reset, "reset"),
    (Kind::SetRole, "set_role"),
    (Kind::SetSessionAuthorization, "set_session_authorization"),
    (Kind::SetTransaction, "set_transaction"),
    (Kind::CopyTo, "copy_to"),
    (Kind::CopyFrom, "copy_from"),
    (Kind::Create, "create"),
    (Kind::Alter, "alter"),
    (Kind::Drop, "drop"),
    (Kind::Truncate, "truncate"),
    (Kind::Grant, "grant"),
    (Kind::Revoke, "revoke"),
    (Kind::Comment, "comment"),
    (Kind::Do, "do"),
    (Kind::Call, "call"),
    (Kind::Prepare, "prepare"),
    (Kind::Execute, "execute"),
    (Kind::Deallocate, "deallocate"),
    (Kind::Listen, "listen"),
    (Kind::Notify, "notify"),
    (Kind::Unlisten, "unlisten"),
    (Kind::Lock, "lock"),
    (Kind::Vacuum, "vacuum"),
    (Kind::Analyze, "analyze"),
    (Kind::Discard, "discard"),
    (Kind::Other, "other"),
];

/// How an UPDATE or DELETE chooses its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// Not an UPDATE or DELETE with a WHERE of its own (e.g. MERGE).
    NotApplicable,
    /// No WHERE: every row.
    Missing,
    /// A WHERE that refers to no column of the table (`1 = 1`, `true`).
    Constant,
    /// A WHERE that refers to a column.
    Column,
}

/// One effect of a statement on one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    /// What it does.
    pub kind: Kind,
    /// The table it does it to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<TableName>,
    /// For UPDATE and DELETE, how rows are chosen.
    pub filter: Filter,
}

/// A configuration parameter a SET or RESET touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// Parameter name, lower case (`all` for RESET ALL).
    pub name: String,
    /// The value set, as written (for SET).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Everything the rules need to know about one statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// The statement's own kind (for EXPLAIN ANALYZE, the statement analysed).
    pub kind: Kind,
    /// Its effects, table by table, including writes inside WITH.
    pub actions: Vec<Action>,
    /// Every function it calls, anywhere.
    pub functions: Vec<FunctionName>,
    /// Schema-qualified operators (`OPERATOR(schema.op)`) outside pg_catalog.
    pub operators: Vec<String>,
    /// Whether it takes row locks (FOR UPDATE / FOR SHARE ...).
    pub locking: bool,
    /// Parameters touched by SET / RESET.
    pub settings: Vec<Setting>,
    /// Constructs the classifier does not model (the statement is refused).
    pub unsupported: Vec<String>,
}

impl Statement {
    /// Whether the statement only reads: its kind and every effect inside it
    /// (a data-modifying CTE is a write) are reads, and it takes no row locks.
    pub fn is_read(&self) -> bool {
        self.kind.is_read() && !self.locking && self.actions.iter().all(|a| a.kind.is_read())
    }
}

/// Why a message could not be classified (it is then refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// The text cannot be split into statements.
    #[error("{0}")]
    Lex(#[from] LexError),
    /// A statement does not parse.
    #[error("statement {index} could not be parsed: {message}")]
    Parse {
        /// 1-based statement number.
        index: usize,
        /// The parser's message.
        message: String,
    },
    /// A piece parses as more or fewer than one statement: the parser and
    /// the server could disagree on what runs.
    #[error("statement {0} is ambiguous: the gateway and the server could split it differently")]
    Ambiguous(usize),
}

/// Classifies every statement of a message.
pub fn classify(text: &str) -> Result<Vec<Statement>, ClassifyError> {
    Ok(classify_parsed(&parse(text)?))
}

/// Classifies statements already parsed by [`parse`].
pub fn classify_parsed(stmts: &[sqlparser::ast::Statement]) -> Vec<Statement> {
    stmts.iter().map(statement::classify).collect()
}

/// Parses every statement of a message, split as the server splits it.
pub fn parse(text: &str) -> Result<Vec<sqlparser::ast::Statement>, ClassifyError> {
    let pieces = lexer::split(text)?;
    let mut out = Vec::with_capacity(pieces.len());
    for (n, piece) in pieces.iter().enumerate() {
        let index = n + 1;
        let rewritten = for_parser(piece);
        let sql = rewritten.as_deref().unwrap_or(piece.text);
        let mut parsed =
            Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| ClassifyError::Parse {
                index,
                message: e
                    .to_string()
                    .trim_start_matches("sql parser error: ")
                    .to_owned(),
            })?;
        if parsed.len() != 1 {
            return Err(ClassifyError::Ambiguous(index));
        }
        out.push(parsed.remove(0));
    }
    Ok(out)
}

/// The text the parser reads, when it must differ from what the server gets:
/// the classification of the two is the same by construction.
fn for_parser(piece: &lexer::Piece<'_>) -> Option<String> {
    if piece.only_at.is_empty() && piece.first_word != "table" {
        return None;
    }
    let mut text = piece.text.to_owned();
    // `ONLY t` reads the same rows as `t` minus child tables: blank it out.
    for &at in &piece.only_at {
        text.replace_range(at..at + 4, "    ");
    }
    // `TABLE name` is exactly `SELECT * FROM name`; the parser lacks the
    // short form.
    if piece.first_word == "table" {
        let at = piece.first_word_at;
        text.replace_range(at..at + 5, "SELECT * FROM");
    }
    Some(text)
}

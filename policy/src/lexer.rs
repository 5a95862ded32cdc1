//! Statement boundaries by the server's own lexical rules.
//!
//! The gateway must classify exactly the statements the server will run. A
//! general SQL parser and the server can disagree on where a string, a
//! comment or a dollar quote ends, and such a disagreement is how stacked
//! statements slip past naive gateways. So boundaries come from this small
//! lexer, which follows PostgreSQL's `scan.l` for everything that can hide a
//! semicolon: `'...'` strings (standard conforming: a backslash is an
//! ordinary character), `E'...'` escape strings, `"..."` identifiers, `U&`
//! forms, `$tag$` dollar quotes, `--` comments and nested `/* */` comments.
//! Each piece is then parsed on its own, and must parse as exactly one
//! statement, or the message is refused.

/// One statement of a message, as the server will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The statement's text, without the terminating semicolon.
    pub text: &'a str,
    /// The first keyword, lower-cased (empty if it starts otherwise).
    pub first_word: String,
    /// Where the first keyword starts in `text`.
    pub first_word_at: usize,
    /// Offsets in `text` of the keyword `ONLY` before a table name
    /// (`FROM ONLY t`), which changes nothing for classification and which
    /// the general parser misreads as a table name.
    pub only_at: Vec<usize>,
}

/// Text the lexer refuses: the server would reject it too, or might read it
/// differently from any parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    /// A quote or comment is never closed.
    #[error("unterminated {0}")]
    Unterminated(&'static str),
    /// A NUL byte: the server stops reading the query there.
    #[error("the statement contains a NUL character")]
    Nul,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// What a token is, as far as boundaries and literals are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Space,
    Comment,
    Semicolon,
    /// A keyword or unquoted identifier.
    Word,
    /// A quoted identifier (`"..."`, `U&"..."`).
    QuotedIdent,
    /// A string (any prefix), dollar-quoted string or number.
    Literal,
    /// An operator, punctuation or a `$` that opens no quote.
    Other,
}

/// The token starting at `i`, and where it ends.
fn token(b: &[u8], i: usize) -> Result<(Tok, usize), LexError> {
    let c = b[i];
    Ok(match c {
        0 => return Err(LexError::Nul),
        b';' => (Tok::Semicolon, i + 1),
        b'-' if b.get(i + 1) == Some(&b'-') => (Tok::Comment, skip_line_comment(b, i)),
        b'/' if b.get(i + 1) == Some(&b'*') => (Tok::Comment, skip_block_comment(b, i)?),
        b'\'' => (Tok::Literal, skip_quoted(b, i + 1, b'\'', false)?),
        b'"' => (Tok::QuotedIdent, skip_quoted(b, i + 1, b'"', false)?),
        b'$' => match dollar_tag(b, i) {
            Some(tag_end) => (Tok::Literal, skip_dollar(b, i, tag_end)?),
            None => (Tok::Other, i + 1),
        },
        c if c.is_ascii_whitespace() => (Tok::Space, i + 1),
        c if is_ident_start(c) => {
            let end = ident_end(b, i);
            let next = b.get(end).copied();
            // Prefixed strings: E'..', B'..', X'..', N'..', U&'..', U&"..".
            if end - i == 1 && next == Some(b'\'') {
                let escapes = matches!(c, b'e' | b'E');
                (Tok::Literal, skip_quoted(b, end + 1, b'\'', escapes)?)
            } else if end - i == 1 && matches!(c, b'u' | b'U') && next == Some(b'&') {
                match b.get(end + 1) {
                    Some(b'\'') => (Tok::Literal, skip_quoted(b, end + 2, b'\'', false)?),
                    Some(b'"') => (Tok::QuotedIdent, skip_quoted(b, end + 2, b'"', false)?),
                    _ => (Tok::Word, end),
                }
            } else {
                (Tok::Word, end)
            }
        }
        c if c.is_ascii_digit() => (Tok::Literal, number_end(b, i)),
        _ => (Tok::Other, i + 1),
    })
}

/// Splits `text` into its non-empty statements.
pub fn split(text: &str) -> Result<Vec<Piece<'_>>, LexError> {
    let b = text.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut first: Option<(usize, usize)> = None;
    let mut only_at = Vec::new();
    let mut prev_word: &[u8] = b"";
    let mut i = 0;
    while i < b.len() {
        let (kind, end) = token(b, i)?;
        match kind {
            Tok::Semicolon => {
                push(
                    &mut pieces,
                    text,
                    start,
                    i,
                    first.take(),
                    std::mem::take(&mut only_at),
                );
                start = end;
                prev_word = b"";
            }
            Tok::Space | Tok::Comment => {}
            _ => {
                if kind == Tok::Word {
                    let word = &b[i..end];
                    if word.eq_ignore_ascii_case(b"only")
                        && !prev_word.eq_ignore_ascii_case(b"row")
                        && !prev_word.eq_ignore_ascii_case(b"rows")
                    {
                        only_at.push(i - start);
                    }
                    prev_word = word;
                }
                first.get_or_insert((i, end));
            }
        }
        i = end;
    }
    push(&mut pieces, text, start, b.len(), first, only_at);
    Ok(pieces)
}

/// `text` with every literal (string, dollar-quoted string, number) replaced
/// by `?`: statements that differ only in their literals share it. `None`
/// if the text does not lex.
pub fn fingerprint(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let (kind, end) = token(b, i).ok()?;
        if kind == Tok::Literal {
            out.push('?');
        } else {
            out.push_str(text.get(i..end)?);
        }
        i = end;
    }
    Some(out)
}

fn push<'a>(
    pieces: &mut Vec<Piece<'a>>,
    text: &'a str,
    start: usize,
    end: usize,
    first: Option<(usize, usize)>,
    only_at: Vec<usize>,
) {
    // A piece with no token at all (only whitespace and comments) is an
    // empty statement, which the server skips.
    let Some((fs, fe)) = first else { return };
    let word = &text.as_bytes()[fs..fe];
    let first_word = if word.first().is_some_and(|&c| is_ident_start(c)) {
        let len = word.iter().take_while(|&&c| is_ident_cont(c)).count();
        text[fs..fs + len].to_ascii_lowercase()
    } else {
        String::new()
    };
    pieces.push(Piece {
        text: &text[start..end],
        first_word,
        first_word_at: fs - start,
        only_at,
    });
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ident_cont(b[i]) {
        i += 1;
    }
    i
}

fn number_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
        i += 1;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        if b.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
            i += 1 + sign;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    // Letters glued on (`0x1F`, `1_000`, or junk the server rejects) form one
    // token with the number, `$` included; a `$` right after the digits does
    // not, and may open a dollar quote, exactly as in the server's scanner.
    if b.get(i).is_some_and(|&c| is_ident_start(c)) {
        i = ident_end(b, i);
    }
    i
}

fn skip_line_comment(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
        i += 1;
    }
    i
}

fn skip_block_comment(b: &[u8], mut i: usize) -> Result<usize, LexError> {
    let mut depth = 0usize;
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => i += 1,
        }
    }
    Err(LexError::Unterminated("comment"))
}

/// Skips to just past the closing `quote`, starting inside the quotes. A
/// doubled quote is an escaped quote; with `backslash`, so is `\` + any byte.
fn skip_quoted(b: &[u8], mut i: usize, quote: u8, backslash: bool) -> Result<usize, LexError> {
    while i < b.len() {
        let c = b[i];
        if backslash && c == b'\\' {
            i += 2;
            continue;
        }
        if c == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Ok(i + 1);
        }
        if c == 0 {
            return Err(LexError::Nul);
        }
        i += 1;
    }
    Err(LexError::Unterminated(if quote == b'"' {
        "quoted identifier"
    } else {
        "string"
    }))
}

/// If a dollar-quote delimiter (`$$` or `$tag$`) starts at `i`, where it ends.
fn dollar_tag(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j).is_some_and(|&c| is_ident_start(c)) {
        while j < b.len() && (is_ident_start(b[j]) || b[j].is_ascii_digit()) {
            j += 1;
        }
    }
    (b.get(j) == Some(&b'$')).then_some(j + 1)
}

fn skip_dollar(b: &[u8], start: usize, tag_end: usize) -> Result<usize, LexError> {
    let tag = &b[start..tag_end];
    let body = &b[tag_end..];
    body.windows(tag.len())
        .position(|w| w == tag)
        .map(|p| tag_end + p + tag.len())
        .ok_or(LexError::Unterminated("dollar-quoted string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        split(sql)
            .unwrap()
            .into_iter()
            .map(|p| p.text.trim())
            .collect()
    }

    #[test]
    fn splits_on_top_level_semicolons_only() {
        assert_eq!(texts("SELECT 1; SELECT 2"), ["SELECT 1", "SELECT 2"]);
        assert_eq!(
            texts("SELECT ';' ; SELECT \";\""),
            ["SELECT ';'", "SELECT \";\""]
        );
        assert_eq!(texts("SELECT 1;;  ; -- only a comment\n"), ["SELECT 1"]);
        assert_eq!(
            texts("/* a; /* nested; */ still; */ SELECT 1"),
            ["/* a; /* nested; */ still; */ SELECT 1"]
        );
    }

    #[test]
    fn standard_strings_treat_backslash_as_a_character() {
        // The server sees 'a\' then a second statement.
        assert_eq!(
            texts(r"SELECT 'a\'; DROP TABLE t; --'"),
            [r"SELECT 'a\'", "DROP TABLE t"]
        );
    }

    #[test]
    fn escape_strings_honour_backslash() {
        assert_eq!(
            texts(r"SELECT E'\''; DROP TABLE customers; --'"),
            [r"SELECT E'\''", "DROP TABLE customers"]
        );
        assert_eq!(
            texts(r"SELECT e'\\'; SELECT 2"),
            [r"SELECT e'\\'", "SELECT 2"]
        );
    }

    #[test]
    fn dollar_quotes_match_their_own_tag() {
        assert_eq!(
            texts("SELECT $a$ ' $a$; DROP TABLE customers; -- '"),
            ["SELECT $a$ ' $a$", "DROP TABLE customers"]
        );
        assert_eq!(
            texts("SELECT $o$ $i$ ; $i$ ; $o$"),
            ["SELECT $o$ $i$ ; $i$ ; $o$"]
        );
        assert_eq!(
            texts("SELECT $1; SELECT $$;$$"),
            ["SELECT $1", "SELECT $$;$$"]
        );
        // `$` inside an identifier does not open a quote; right after digits it does.
        assert_eq!(
            texts("SELECT a$b$c; SELECT 2"),
            ["SELECT a$b$c", "SELECT 2"]
        );
        assert_eq!(texts("SELECT 1$$;$$"), ["SELECT 1$$;$$"]);
        // `1e$$` is one (junk) token, so the last `$$` opens a quote never closed.
        assert!(split("SELECT 1e$$;$$").is_err());
    }

    #[test]
    fn unicode_forms_are_quoted_too() {
        assert_eq!(
            texts(r#"DELETE FROM U&"\0063;x"; SELECT U&'a;b'"#),
            [r#"DELETE FROM U&"\0063;x""#, "SELECT U&'a;b'"]
        );
    }

    #[test]
    fn first_words_are_lower_cased() {
        let p = split("  /* c */ TABLE orders; select 1; (SELECT 2)").unwrap();
        assert_eq!(p[0].first_word, "table");
        assert_eq!(
            &p[0].text[p[0].first_word_at..p[0].first_word_at + 5],
            "TABLE"
        );
        assert_eq!(p[1].first_word, "select");
        assert_eq!(p[2].first_word, "");
    }

    #[test]
    fn only_before_a_table_is_found_but_not_in_fetch() {
        let p =
            split("DELETE FROM ONLY t; SELECT 1 FETCH FIRST 1 ROWS ONLY; UPDATE only x SET a = 1")
                .unwrap();
        assert_eq!(p[0].only_at, [12]);
        assert!(p[1].only_at.is_empty());
        assert_eq!(&p[2].text[p[2].only_at[0]..p[2].only_at[0] + 4], "only");
    }

    #[test]
    fn fingerprints_ignore_literals_only() {
        let a = fingerprint("SELECT abalance FROM t WHERE aid = 48271 AND s = 'x'").unwrap();
        let b = fingerprint("SELECT abalance FROM t WHERE aid = 7 AND s = E'y\\'z'").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "SELECT abalance FROM t WHERE aid = ? AND s = ?");
        assert_ne!(
            a,
            fingerprint("SELECT abalance FROM u WHERE aid = 1 AND s = 'x'").unwrap()
        );
        assert_ne!(
            fingerprint("SELECT \"a\"").unwrap(),
            fingerprint("SELECT \"b\"").unwrap()
        );
        assert_eq!(fingerprint("SELECT $$;$$, $1").unwrap(), "SELECT ?, $?");
        assert!(fingerprint("SELECT 'open").is_none());
    }

    #[test]
    fn unterminated_and_nul_are_errors() {
        assert_eq!(split("SELECT 'abc"), Err(LexError::Unterminated("string")));
        assert_eq!(
            split("SELECT /* /* */"),
            Err(LexError::Unterminated("comment"))
        );
        assert_eq!(
            split("SELECT $x$ abc"),
            Err(LexError::Unterminated("dollar-quoted string"))
        );
        assert_eq!(
            split("SELECT \"abc"),
            Err(LexError::Unterminated("quoted identifier"))
        );
        assert_eq!(split("SELECT 1\0; DROP"), Err(LexError::Nul));
    }
}

//! The keepalived.conf lexer: physical lines in, logical lines of words out.
//!
//! It follows keepalived 2.2.7's `read_line()` (lib/parser.c) step by step, because operators'
//! files rely on its quirks:
//! - comments start at `!` or `#` anywhere outside double quotes; `\#` and `\!` escape them;
//!   leading and trailing blanks go; a line ending in `\` keeps the `\` (multi-line definitions);
//! - `@ID rest` keeps `rest` only when ID is the config id, `@^ID rest` only when it is not;
//! - `$NAME=value` defines a parameter (a trailing `\` continues it on the next lines);
//!   `$NAME` (followed by a blank, `,`, `)` or the end) and `${NAME}` are replaced, recursively,
//!   and undefined names are left alone; `${_PWD}`, `${_INSTANCE}`, `${_RANDOM [MIN [MAX]]}`,
//!   `${_HASH}` and `${_BANG}` are predefined;
//! - `~SEQ(var, start, step, end)` / `~SEQx(...)` and `~LST(var, v1, v2, ...)` /
//!   `~LST({a, b}, {1, 2}, ...)` repeat the rest of the line;
//! - `include FILE` (and `includer`, `includem`, `includew`, `includeb`, `includea`) reads the
//!   files matching the glob (with `{a,b}` brace expansion), relative to the including file;
//! - every `{` and `}` outside quotes ends the logical line, so `real_server 1.2.3.4 80 {
//!   weight 1 }` is four lines: the keyword, `{`, `weight 1` and `}`;
//! - words are split on blanks; `"..."` is one word without its quotes (single quotes are not
//!   special here; script command lines are split again with [`split_command`]).
//!
//! Every word keeps its file, line and column.

use std::{
    borrow::Cow,
    fs,
    path::{Path, PathBuf},
};

use smallvec::SmallVec;

use super::error::{Diagnostics, ExitClass, Loc, Severity};

/// Longest line, after substitutions, that the lexer builds (keepalived stops at MAXBUF).
const MAX_LINE: usize = 64 * 1024;
/// Most substitutions on one line, so that `$A=$A` cannot loop forever.
const MAX_SUBSTITUTIONS: usize = 10_000;
/// Deepest include nesting, so that a file including itself stops.
const MAX_INCLUDE_DEPTH: usize = 32;
/// Most lines a `~SEQ`/`~LST` may produce, so that a typo cannot exhaust memory.
const MAX_SEQ_LINES: i64 = 1_000_000;

/// One word of a logical line: a byte range of [`Line::text`] and its column in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word {
    start: u32,
    end: u32,
    /// 1-based column in the physical line (approximate after a substitution).
    pub column: u32,
}

/// One logical line: the words of a keyword and its arguments, or a lone `{` or `}`.
#[derive(Debug, Clone, Default)]
pub struct Line {
    /// File and line it came from (column of the first word).
    pub loc: Loc,
    /// The text after comments, conditionals and substitutions were handled.
    pub text: Cow<'static, str>,
    words: SmallVec<[Word; 6]>,
}

impl Line {
    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when the line has no words.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The `i`th word, if present.
    pub fn word(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(|w| &self.text[w.start as usize..w.end as usize])
    }

    /// The `i`th word, or "" if absent.
    pub fn w(&self, i: usize) -> &str {
        self.word(i).unwrap_or("")
    }

    /// Every word.
    pub fn words(&self) -> impl Iterator<Item = &str> + '_ {
        self.words.iter().map(|w| &self.text[w.start as usize..w.end as usize])
    }

    /// The location of the `i`th word (the line's location if absent).
    pub fn loc_of(&self, i: usize) -> Loc {
        match self.words.get(i) {
            Some(w) => Loc { column: w.column, ..self.loc },
            None => self.loc,
        }
    }

    /// Removes the last word.
    pub fn pop(&mut self) {
        self.words.pop();
    }
}

/// Options for the lexer.
#[derive(Debug, Clone, Default)]
pub struct LexOptions {
    /// The config id compared with `@ID` lines.
    pub config_id: String,
    /// `-e/--all-config`: a missing include is an error (keepalived's `includea` for all).
    pub all_config: bool,
    /// Refuse includes (fuzzing).
    pub deny_includes: bool,
}

/// A definition (`$NAME=value`).
#[derive(Debug, Clone)]
struct Def {
    name: String,
    value: String,
    multiline: bool,
    kind: StdDef,
}

/// Predefined definitions, whose value is computed when used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StdDef {
    None,
    Pwd,
    Instance,
    Random,
}

/// A pending `~SEQ` or `~LST` repetition.
#[derive(Debug, Clone)]
struct Seq {
    vars: Vec<String>,
    values: SeqValues,
    text: String,
    loc: Loc,
    base_col: u32,
}

#[derive(Debug, Clone)]
enum SeqValues {
    Range { next: i64, last: i64, step: i64, hex: bool, produced: i64 },
    List { tuples: Vec<Vec<String>>, next: usize },
}

/// One file being read.
#[derive(Debug)]
struct OpenFile {
    id: u32,
    text: String,
    pos: usize,
    line: u32,
    dir: PathBuf,
}

/// A multi-line definition being expanded.
#[derive(Debug)]
struct Multiline {
    rest: String,
    pos: usize,
    seq_depth: usize,
    loc: Loc,
}

/// The lexer: owns the include stack and the definitions.
#[derive(Debug)]
pub struct Lexer {
    options: LexOptions,
    files: Vec<OpenFile>,
    defs: Vec<Def>,
    seqs: Vec<Seq>,
    multiline: Vec<Multiline>,
    multiline_seq_depth: usize,
    residue: Option<(Cow<'static, str>, Loc, u32)>,
    defining: Option<usize>,
    block_depth: i64,
    random_state: u64,
    /// Location of the physical line last read.
    cur: Loc,
}

impl Lexer {
    /// A lexer with nothing to read yet; see [`Lexer::open_main`] and [`Lexer::push_text`].
    pub fn new(options: LexOptions) -> Self {
        let mut lexer = Lexer {
            options,
            files: Vec::new(),
            defs: Vec::new(),
            seqs: Vec::new(),
            multiline: Vec::new(),
            multiline_seq_depth: 0,
            residue: None,
            defining: None,
            block_depth: 0,
            random_state: seed_from_time(),
            cur: Loc::default(),
        };
        for (name, kind, value) in [
            ("_PWD", StdDef::Pwd, ""),
            ("_INSTANCE", StdDef::Instance, ""),
            ("_RANDOM", StdDef::Random, ""),
            ("_HASH", StdDef::None, "#"),
            ("_BANG", StdDef::None, "!"),
        ] {
            lexer.defs.push(Def { name: name.into(), value: value.into(), multiline: false, kind });
        }
        lexer
    }

    /// Seeds `${_RANDOM}` (global_defs `random_seed`).
    pub fn set_random_seed(&mut self, seed: u64) {
        self.random_state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    }

    /// Starts reading `text` as if it were the file `name` (tests, fuzzing, `-` on stdin).
    pub fn push_text(&mut self, diags: &mut Diagnostics, name: &str, text: String) {
        let id = diags.files.len() as u32;
        diags.files.push(name.to_string());
        let dir = Path::new(name).parent().map(Path::to_path_buf).unwrap_or_default();
        self.files.push(OpenFile { id, text, pos: 0, line: 0, dir });
    }

    /// Opens the main configuration file. Unlike an include, it must exist.
    pub fn open_main(&mut self, diags: &mut Diagnostics, path: &Path) -> std::io::Result<()> {
        let bytes = fs::read(path)?;
        let text =
            String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        self.push_text(diags, &path.to_string_lossy(), text);
        Ok(())
    }

    /// Reads the next logical line, or `None` at the end of all files.
    pub fn next_line(&mut self, diags: &mut Diagnostics) -> Option<Line> {
        loop {
            let (mut buf, mut loc, mut base_col) = if let Some((text, loc, col)) = self.residue.take() {
                match text {
                    Cow::Borrowed(brace) => return Some(self.brace(diags, brace, loc)),
                    Cow::Owned(text) => (text, loc, col),
                }
            } else if self.seqs.len() > self.multiline_seq_depth {
                match self.next_seq_line() {
                    Some(r) => r,
                    None => continue,
                }
            } else if let Some(r) = self.next_multiline_line() {
                r
            } else {
                match self.next_physical(diags) {
                    Some(Physical::Line(b, l, c)) => (b, l, c),
                    Some(Physical::Brace(brace, l)) => return Some(self.brace(diags, brace, l)),
                    Some(Physical::Plain(line)) => return Some(line),
                    Some(Physical::Skip) => continue,
                    None => {
                        self.end_of_input(diags);
                        return None;
                    }
                }
            };

            // keepalived's inner do { } while (recheck) loop.
            let mut substitutions = 0usize;
            loop {
                let mut recheck = false;
                if buf.starts_with('@') {
                    let (rev, ofs) =
                        if buf.as_bytes().get(1) == Some(&b'^') { (true, 2) } else { (false, 1) };
                    let Some(sp) = buf[ofs..].find([' ', '\t']).map(|i| i + ofs) else {
                        buf.clear();
                        break;
                    };
                    let matches = buf[ofs..sp] == *self.options.config_id;
                    if matches == rev {
                        buf.clear();
                        break;
                    }
                    let rest_start = sp + buf[sp..].len() - buf[sp..].trim_start_matches([' ', '\t']).len();
                    base_col += rest_start as u32;
                    buf.drain(..rest_start);
                    loc.column = base_col + 1;
                }
                if buf.starts_with('$') && self.check_definition(&buf) {
                    buf.clear();
                    break;
                }
                if buf.starts_with("~SEQ") || buf.starts_with("~LST") {
                    if let Err(msg) = self.add_seq(&buf, loc, base_col) {
                        diags.error(loc, msg);
                    }
                    buf.clear();
                    break;
                }
                if buf.starts_with('~') {
                    break;
                }
                if buf.contains('$') {
                    match self.replace_params(&mut buf, loc, &mut substitutions) {
                        Ok(false) => break,
                        Ok(true) => {}
                        Err(msg) => {
                            diags.error(loc, msg);
                            buf.clear();
                            break;
                        }
                    }
                    if buf.starts_with('@') || buf.contains('$') {
                        recheck = true;
                    }
                }
                if !recheck {
                    break;
                }
            }
            if buf.is_empty() {
                continue;
            }
            if self.check_include(diags, &buf, loc) {
                continue;
            }

            // Split at the first '{' or '}' outside double quotes.
            let bytes = buf.as_bytes();
            let mut brace = None;
            if bytes[0] == b'{' || bytes[0] == b'}' {
                brace = Some(0);
            } else {
                let mut i = 0;
                while i < bytes.len() {
                    match bytes[i] {
                        b'{' | b'}' => {
                            brace = Some(i);
                            break;
                        }
                        b'"' => match buf[i + 1..].find('"') {
                            Some(j) => i += j + 2,
                            None => break,
                        },
                        _ => i += 1,
                    }
                }
            }
            if let Some(p) = brace {
                let skip = if p == 0 {
                    1 + buf[1..].len() - buf[1..].trim_start_matches([' ', '\t']).len()
                } else {
                    p
                };
                if skip < buf.len() {
                    let rest = buf[skip..].trim_end_matches([' ', '\t']);
                    // A lone brace (the usual `keyword {`) needs no allocation.
                    let rest = match rest {
                        "{" => Cow::Borrowed("{"),
                        "}" => Cow::Borrowed("}"),
                        other => Cow::Owned(other.to_string()),
                    };
                    let rest_col = base_col + skip as u32;
                    self.residue = Some((rest, Loc { column: rest_col + 1, ..loc }, rest_col));
                    buf.truncate(skip);
                }
            }
            let trimmed = buf.trim_end_matches([' ', '\t']).len();
            buf.truncate(trimmed);
            if buf == "{" {
                self.block_depth += 1;
            } else if buf == "}" {
                self.block_depth -= 1;
                if self.block_depth < 0 {
                    diags.error(loc, "Extra '}' found");
                    self.block_depth = 0;
                }
            }
            let line = tokenize(diags, buf, loc, base_col);
            if line.is_empty() {
                continue;
            }
            return Some(line);
        }
    }
}

/// The `{` left over by [`plain_line`]: text, location, base column.
type Residue = Option<(Cow<'static, str>, Loc, u32)>;

/// Fast path for the common physical line: words with nothing the pipeline would change
/// (no comment, quote, escape, `$`, `@`, `~`, brace or `include`), optionally followed by
/// the `{` opening a block. Such a line is its own logical line; the `{` becomes the next.
fn plain_line(t: &str, loc: Loc, leading: u32) -> Option<(Line, Residue)> {
    {
        let (body, opens) = match t.strip_suffix('{') {
            Some(b) if b.ends_with([' ', '\t']) => (b.trim_end_matches([' ', '\t']), true),
            Some(_) => return None,
            None => (t, false),
        };
        if body.starts_with("include") {
            return None;
        }
        let b = body.as_bytes();
        let mut words: SmallVec<[Word; 6]> = SmallVec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'!' | b'#' | b'"' | b'\\' | b'$' | b'@' | b'~' | b'{' | b'}' | b'\r' | 0x0b | 0x0c => {
                    return None;
                }
                b' ' | b'\t' => i += 1,
                _ => {
                    let start = i;
                    while i < b.len() && !matches!(b[i], b' ' | b'\t') {
                        if matches!(
                            b[i],
                            b'!' | b'#' | b'"' | b'\\' | b'$' | b'{' | b'}' | b'\r' | 0x0b | 0x0c
                        ) {
                            return None;
                        }
                        i += 1;
                    }
                    words.push(Word {
                        start: start as u32,
                        end: i as u32,
                        column: leading + start as u32 + 1,
                    });
                }
            }
        }
        if words.is_empty() {
            return None;
        }
        let residue = opens.then(|| {
            let col = leading + t.len() as u32;
            (Cow::Borrowed("{"), Loc { column: col, ..loc }, col - 1)
        });
        Some((
            Line { loc: Loc { column: leading + 1, ..loc }, text: Cow::Owned(body.to_string()), words },
            residue,
        ))
    }
}

impl Lexer {
    /// A logical line that is a lone `{` or `}`.
    fn brace(&mut self, diags: &mut Diagnostics, brace: &'static str, loc: Loc) -> Line {
        if brace == "{" {
            self.block_depth += 1;
        } else {
            self.block_depth -= 1;
            if self.block_depth < 0 {
                diags.error(loc, "Extra '}' found");
                self.block_depth = 0;
            }
        }
        let mut words = SmallVec::new();
        words.push(Word { start: 0, end: 1, column: loc.column });
        Line { loc, text: Cow::Borrowed(brace), words }
    }

    fn end_of_input(&mut self, diags: &mut Diagnostics) {
        if self.block_depth > 0 {
            let loc = self.cur;
            diags.error(loc, format!("There are {} missing '}}'s or extra '{{'s", self.block_depth));
            self.block_depth = 0;
        }
    }

    /// Reads the next physical line of the innermost open file, handling comments and
    /// multi-line definitions. `Skip` means the line produced nothing.
    fn next_physical(&mut self, diags: &mut Diagnostics) -> Option<Physical> {
        loop {
            let file = self.files.last_mut()?;
            if file.pos >= file.text.len() {
                self.files.pop();
                if self.defining.is_some() {
                    self.finish_definition();
                }
                continue;
            }
            let rest = &file.text[file.pos..];
            let (raw, advance) = match rest.find('\n') {
                Some(i) => (&rest[..i], i + 1),
                None => (rest, rest.len()),
            };
            file.pos += advance;
            file.line += 1;
            let raw = raw.trim_end_matches(['\r', '\n']);
            let loc = Loc { file: file.id, line: file.line, column: 1 };
            self.cur = loc;
            if raw.is_empty() {
                if self.defining.is_some() {
                    self.finish_definition();
                }
                continue;
            }
            if self.defining.is_none() {
                let trimmed = raw.trim_start_matches([' ', '\t']);
                let leading = (raw.len() - trimmed.len()) as u32;
                let t = trimmed.trim_end_matches([' ', '\t']);
                if t == "{" || t == "}" {
                    return Some(Physical::Brace(
                        if t == "{" { "{" } else { "}" },
                        Loc { column: leading + 1, ..loc },
                    ));
                }
                if let Some((line, brace)) = plain_line(t, loc, leading) {
                    if brace.is_some() {
                        self.residue = brace;
                    }
                    return Some(Physical::Plain(line));
                }
            }
            let (text, leading) = decomment(diags, raw, loc);
            if text.is_empty() {
                return Some(Physical::Skip);
            }
            if let Some(idx) = self.defining {
                let (mut part, more) = match text.strip_suffix('\\') {
                    Some(p) => (p.trim_end_matches([' ', '\t']).to_string(), true),
                    None => (text, false),
                };
                if more {
                    part.push('\n');
                }
                if part.len() >= 2 || (!part.is_empty() && !more) {
                    self.defs[idx].value.push_str(&part);
                }
                if !more {
                    self.finish_definition();
                }
                return Some(Physical::Skip);
            }
            let col = leading as u32;
            return Some(Physical::Line(text, Loc { column: col + 1, ..loc }, col));
        }
    }

    fn finish_definition(&mut self) {
        if let Some(idx) = self.defining.take()
            && self.defs[idx].value.is_empty()
        {
            self.defs[idx].multiline = false;
        }
    }

    fn next_multiline_line(&mut self) -> Option<(String, Loc, u32)> {
        let m = self.multiline.last_mut()?;
        let rest = &m.rest[m.pos..];
        let loc = m.loc;
        let line = match rest.find('\n') {
            Some(i) => {
                let l = rest[..i].to_string();
                m.pos += i + 1;
                l
            }
            None => {
                let l = rest.to_string();
                let m = self.multiline.pop()?;
                self.multiline_seq_depth = match self.multiline.last() {
                    Some(prev) => prev.seq_depth,
                    None => {
                        let _ = m;
                        0
                    }
                };
                l
            }
        };
        Some((line, loc, 0))
    }

    fn next_seq_line(&mut self) -> Option<(String, Loc, u32)> {
        let seq = self.seqs.last_mut()?;
        let (values, done): (Vec<String>, bool) = match &mut seq.values {
            SeqValues::Range { next, last, step, hex, produced } => {
                let v = if *hex { format!("{:x}", *next) } else { format!("{}", *next) };
                *next += *step;
                *produced += 1;
                let done = (*step > 0 && *next > *last)
                    || (*step < 0 && *next < *last)
                    || *produced >= MAX_SEQ_LINES;
                (vec![v], done)
            }
            SeqValues::List { tuples, next } => {
                let v = tuples.get(*next).cloned().unwrap_or_default();
                *next += 1;
                (v, *next >= tuples.len())
            }
        };
        let vars = seq.vars.clone();
        let text = seq.text.clone();
        let loc = seq.loc;
        let base_col = seq.base_col;
        if done {
            self.seqs.pop();
        }
        for (var, val) in vars.iter().zip(values) {
            self.set_definition(var, val);
        }
        Some((text, loc, base_col))
    }

    fn find_def(&self, name: &str) -> Option<usize> {
        self.defs.iter().position(|d| d.name == name)
    }

    fn set_definition(&mut self, name: &str, value: String) {
        match self.find_def(name) {
            Some(i) => {
                self.defs[i].value = value;
                self.defs[i].multiline = false;
                self.defs[i].kind = StdDef::None;
            }
            None => {
                self.defs.push(Def { name: name.to_string(), value, multiline: false, kind: StdDef::None })
            }
        }
    }

    /// `$NAME=value`: returns true when the line was a definition.
    fn check_definition(&mut self, buf: &str) -> bool {
        let b = buf.as_bytes();
        if b.len() < 2 || !(b[1].is_ascii_alphabetic() || b[1] == b'_') {
            return false;
        }
        let mut p = 2;
        while p < b.len() && b[p] != b'=' {
            if !(b[p].is_ascii_alphanumeric() || b[p] == b'_') {
                return false;
            }
            p += 1;
        }
        if p >= b.len() {
            return false;
        }
        let name = &buf[1..p];
        let value = buf[p + 1..].trim_start_matches([' ', '\t']);
        let (value, multiline) = match value.strip_suffix('\\') {
            Some(v) => {
                let v = v.trim_end_matches([' ', '\t']);
                if v.is_empty() { (String::new(), true) } else { (format!("{v}\n"), true) }
            }
            None => (value.to_string(), false),
        };
        let idx = match self.find_def(name) {
            Some(i) => {
                self.defs[i].value = value;
                self.defs[i].kind = StdDef::None;
                i
            }
            None => {
                self.defs.push(Def { name: name.to_string(), value, multiline: false, kind: StdDef::None });
                self.defs.len() - 1
            }
        };
        self.defs[idx].multiline = multiline;
        if multiline {
            self.defining = Some(idx);
        }
        true
    }

    /// Replaces `$NAME` / `${NAME}` in `buf`; returns whether anything was replaced.
    fn replace_params(&mut self, buf: &mut String, loc: Loc, count: &mut usize) -> Result<bool, String> {
        let mut found = false;
        let mut cur = 0usize;
        while let Some(off) = buf[cur..].find('$') {
            let pos = cur + off;
            if pos + 1 >= buf.len() {
                break;
            }
            let Some(m) = self.match_reference(&buf[pos + 1..]) else {
                cur = pos + 1;
                continue;
            };
            *count += 1;
            if *count > MAX_SUBSTITUTIONS {
                return Err(format!("too many parameter substitutions on line '{buf}'"));
            }
            found = true;
            let (kind, multiline) = (self.defs[m.def].kind, self.defs[m.def].multiline);
            let replacement = match kind {
                StdDef::None => self.defs[m.def].value.clone(),
                StdDef::Pwd => self.pwd(),
                StdDef::Instance => self.options.config_id.clone(),
                StdDef::Random => self.random(m.params.as_deref()),
            };
            let end = pos + 1 + m.len;
            if multiline {
                let (first, rest) = match replacement.find('\n') {
                    Some(i) => (replacement[..i].to_string(), replacement[i + 1..].to_string()),
                    None => (replacement.clone(), String::new()),
                };
                self.multiline_seq_depth = self.seqs.len();
                self.multiline.push(Multiline { rest, pos: 0, seq_depth: self.seqs.len(), loc });
                buf.replace_range(pos..end, &first);
            } else {
                buf.replace_range(pos..end, &replacement);
            }
            if buf.len() > MAX_LINE {
                return Err("parameter substitution would exceed the maximum line length".to_string());
            }
            if replacement.trim_start_matches([' ', '\t']).starts_with('~') {
                break;
            }
            cur = pos;
        }
        Ok(found)
    }

    /// Matches a reference after a '$': `NAME` or `{NAME}` or `{_RANDOM 1 10}`.
    fn match_reference(&self, s: &str) -> Option<Reference> {
        let b = s.as_bytes();
        let braces = b.first() == Some(&b'{');
        let start = usize::from(braces);
        let first = *b.get(start)?;
        if !(first.is_ascii_alphabetic() || first == b'_') {
            return None;
        }
        let mut p = start + 1;
        while p < b.len() && (b[p].is_ascii_alphanumeric() || b[p] == b'_') {
            p += 1;
        }
        let name = &s[start..p];
        let mut params = None;
        let total;
        if braces {
            let mut q = p;
            let mut pstart = None;
            let mut pend = 0;
            while q < b.len() && (b[q] == b' ' || b[q].is_ascii_digit()) {
                if b[q] != b' ' {
                    pstart.get_or_insert(q);
                    pend = q;
                }
                q += 1;
            }
            if let Some(ps) = pstart {
                if pend + 1 != q {
                    return None;
                }
                params = Some(s[ps..=pend].to_string());
            }
            if b.get(q) != Some(&b'}') {
                return None;
            }
            total = q + 1;
        } else {
            match b.get(p) {
                None | Some(b' ' | b'\t' | b',' | b')') => {}
                _ => return None,
            }
            total = p;
        }
        let at_end = total == s.len();
        let idx = self.defs.iter().position(|d| d.name == name && (at_end || !d.multiline))?;
        if params.is_some() && self.defs[idx].kind != StdDef::Random {
            return None;
        }
        Some(Reference { def: idx, len: total, params })
    }

    fn pwd(&self) -> String {
        let dir = self.files.last().map(|f| f.dir.clone()).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let abs = if dir.is_absolute() {
            dir
        } else {
            std::env::current_dir().map(|c| c.join(&dir)).unwrap_or(dir)
        };
        let s = abs.to_string_lossy().into_owned();
        s.strip_suffix("/.").map(str::to_string).unwrap_or(s)
    }

    fn random(&mut self, params: Option<&str>) -> String {
        let mut min = 0u64;
        let mut max = 32767u64;
        if let Some(p) = params {
            let mut it = p.split(' ').filter(|s| !s.is_empty());
            if let Some(v) = it.next().and_then(|v| v.parse().ok()) {
                min = v;
            }
            if let Some(v) = it.next().and_then(|v| v.parse().ok()) {
                max = v;
            }
        }
        // xorshift64*: only needs to be repeatable for a given random_seed.
        let mut x = self.random_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random_state = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let span = max.saturating_sub(min).saturating_add(1);
        (min + r % span.max(1)).to_string()
    }

    /// Parses `~SEQ(...)`, `~SEQx(...)` or `~LST(...)` and queues the repetition.
    fn add_seq(&mut self, buf: &str, loc: Loc, base_col: u32) -> Result<(), String> {
        let is_list = buf.starts_with("~LST");
        let mut p = &buf[4..];
        let hex = !is_list && p.starts_with('x');
        if hex {
            p = &p[1..];
        }
        p = p.trim_start_matches([' ', '\t']);
        let Some(inner_start) = p.strip_prefix('(') else {
            return Err(format!("Invalid ~{} specification '{buf}'", if is_list { "LST" } else { "SEQ" }));
        };
        // Find the matching ')', allowing {..} groups inside ~LST.
        let mut depth = 0i32;
        let mut close = None;
        for (i, c) in inner_start.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ')' if depth == 0 => {
                    close = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(close) = close else {
            return Err(format!("Invalid ~SEQ definition '{buf}'"));
        };
        let mut inner = inner_start[..close].to_string();
        let mut n = 0;
        // Parameters may themselves be definitions.
        let _ = self.replace_params(&mut inner, loc, &mut n);
        let rest = inner_start[close + 1..].trim_start_matches([' ', '\t']);
        let text_col = base_col + (buf.len() - rest.len()) as u32;
        let (vars, values) = if is_list { parse_lst(&inner, buf)? } else { parse_seq(&inner, buf, hex)? };
        if rest.is_empty() {
            return Ok(());
        }
        self.seqs.push(Seq { vars, values, text: rest.to_string(), loc, base_col: text_col });
        Ok(())
    }

    /// Handles `include FILE` and its variants; returns true when the line was one.
    fn check_include(&mut self, diags: &mut Diagnostics, buf: &str, loc: Loc) -> bool {
        if !buf.starts_with("include") {
            return false;
        }
        let line = tokenize(&mut Diagnostics::default(), buf.to_string(), loc, 0);
        if line.len() != 2 {
            return false;
        }
        let strict = match line.w(0) {
            "include" => self.options.all_config,
            "includer" | "includem" | "includew" | "includeb" | "includea" => true,
            _ => return false,
        };
        let pattern = line.w(1).to_string();
        if self.options.deny_includes {
            diags.error(loc, format!("include '{pattern}' is not allowed here"));
            return true;
        }
        if self.files.len() >= MAX_INCLUDE_DEPTH {
            diags.error(
                loc,
                format!("include '{pattern}' nested too deeply (more than {MAX_INCLUDE_DEPTH} levels)"),
            );
            return true;
        }
        let dir = self.files.last().map(|f| f.dir.clone()).unwrap_or_default();
        let mut matched = Vec::new();
        for pat in expand_braces(&pattern) {
            let full = if Path::new(&pat).is_absolute() || dir.as_os_str().is_empty() {
                pat.clone()
            } else {
                format!("{}/{}", glob::Pattern::escape(&dir.to_string_lossy()), pat)
            };
            match glob::glob(&full) {
                Ok(paths) => {
                    for p in paths.flatten() {
                        if !matched.contains(&p) {
                            matched.push(p);
                        }
                    }
                }
                Err(e) => diags.error(loc, format!("invalid include pattern '{pattern}': {e}")),
            }
        }
        let mut opened = Vec::new();
        for path in matched {
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if meta.is_dir() {
                continue;
            }
            use std::os::unix::fs::PermissionsExt as _;
            if !meta.is_file() || meta.permissions().mode() & 0o111 != 0 {
                diags.warn(
                    loc,
                    format!(
                        "Configuration file '{}' is not a regular non-executable file - skipping",
                        path.display()
                    ),
                );
                continue;
            }
            match fs::read(&path) {
                Ok(bytes) => {
                    let text = String::from_utf8(bytes)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                    opened.push((path, text));
                }
                Err(e) => {
                    let sev = if strict { Severity::Error } else { Severity::Warning };
                    diags.push(
                        sev,
                        loc,
                        format!("Configuration file '{}' open problem ({e}) - skipping", path.display()),
                    );
                }
            }
        }
        if opened.is_empty() {
            if strict {
                diags.push_class(
                    Severity::Error,
                    ExitClass::Fatal,
                    loc,
                    format!("No config files matched '{pattern}'."),
                );
            } else {
                diags.warn(loc, format!("No config files matched '{pattern}'."));
            }
        }
        // Push in reverse so that the first match is read first.
        for (path, text) in opened.into_iter().rev() {
            let id = diags.files.len() as u32;
            diags.files.push(path.to_string_lossy().into_owned());
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            self.files.push(OpenFile { id, text, pos: 0, line: 0, dir });
        }
        true
    }
}

enum Physical {
    Line(String, Loc, u32),
    Plain(Line),
    Brace(&'static str, Loc),
    Skip,
}

struct Reference {
    def: usize,
    len: usize,
    params: Option<String>,
}

fn seed_from_time() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    t | 1
}

/// keepalived's `decomment()`: strips comments, `\#`/`\!` escapes and surrounding blanks.
/// Returns the text and the number of leading blanks removed.
fn decomment(diags: &mut Diagnostics, raw: &str, loc: Loc) -> (String, usize) {
    let trimmed = raw.trim_start_matches([' ', '\t']);
    let leading = raw.len() - trimmed.len();
    // Fast path: most lines have no comment, quote or backslash.
    if !trimmed.bytes().any(|b| matches!(b, b'!' | b'#' | b'"' | b'\\')) {
        return (trimmed.trim_end_matches([' ', '\t']).to_string(), leading);
    }
    let mut out: Vec<u8> = Vec::with_capacity(trimmed.len());
    let b = trimmed.as_bytes();
    let mut quote = false;
    let mut cont = false;
    let mut skip: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => {
                if skip.is_none() {
                    quote = !quote;
                }
                out.push(c);
                i += 1;
            }
            b'\\' => {
                if i + 1 < b.len() {
                    if !quote && (b[i + 1] == b'#' || b[i + 1] == b'!') {
                        out.push(b[i + 1]);
                    } else {
                        out.push(c);
                        out.push(b[i + 1]);
                    }
                    i += 2;
                } else {
                    cont = true;
                    break;
                }
            }
            b'!' | b'#' if !quote && skip.is_none() => {
                skip = Some(out.len());
                out.push(c);
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    if quote {
        diags.error(loc, format!("Unterminated quote '{}'", String::from_utf8_lossy(&out)));
    }
    if let Some(s) = skip {
        out.truncate(s);
    }
    while matches!(out.last(), Some(b' ' | b'\t')) {
        out.pop();
    }
    if cont {
        out.push(b'\\');
    }
    let text = String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    (text, leading)
}

/// keepalived's `alloc_strvec()`: words split on blanks, `"..."` one word without quotes.
fn tokenize(diags: &mut Diagnostics, text: String, loc: Loc, base_col: u32) -> Line {
    let mut words: SmallVec<[Word; 6]> = SmallVec::new();
    let b = text.as_bytes();
    let ws = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && ws(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let column = base_col + i as u32 + 1;
        if b[i] == b'"' {
            let start = i + 1;
            match text[start..].find('"') {
                Some(j) => {
                    words.push(Word { start: start as u32, end: (start + j) as u32, column });
                    i = start + j + 1;
                }
                None => {
                    diags.error(Loc { column, ..loc }, format!("Unmatched quote: '{text}'"));
                    break;
                }
            }
        } else {
            let start = i;
            while i < b.len() && !ws(b[i]) && b[i] != b'"' {
                i += 1;
            }
            words.push(Word { start: start as u32, end: i as u32, column });
        }
    }
    let loc = Loc { column: words.first().map_or(loc.column, |w| w.column), ..loc };
    Line { loc, text: Cow::Owned(text), words }
}

fn parse_seq(inner: &str, buf: &str, hex: bool) -> Result<(Vec<String>, SeqValues), String> {
    let invalid = || format!("Invalid ~SEQ definition '{buf}'");
    let mut parts = inner.split(',').map(|s| s.trim_matches([' ', '\t']));
    let var = parts.next().filter(|v| !v.is_empty()).ok_or_else(invalid)?;
    let nums: Vec<i64> = parts.map(|s| parse_c_long(s).ok_or_else(invalid)).collect::<Result<_, _>>()?;
    let (start, step, end) = match nums.as_slice() {
        [end] => (if *end < 0 { -1 } else { 1 }, if *end < 1 { -1 } else { 1 }, *end),
        [start, end] => (*start, if start <= end { 1 } else { -1 }, *end),
        [start, step, end] => {
            if *step == 0 || (start < end && *step < 0) || (start > end && *step > 0) {
                return Err(format!("Invalid ~SEQ values '{buf}'"));
            }
            (*start, *step, *end)
        }
        _ => return Err(invalid()),
    };
    if hex && (start < 0 || end < 0) {
        return Err(format!("~SEQx is only valid for positive numbers '{buf}'"));
    }
    if (step > 0 && start > end) || (step < 0 && start < end) {
        // Nothing to produce: keepalived produces the first value once; so do we.
    }
    Ok((vec![var.to_string()], SeqValues::Range { next: start, last: end, step, hex, produced: 0 }))
}

fn parse_lst(inner: &str, buf: &str) -> Result<(Vec<String>, SeqValues), String> {
    let invalid = || format!("Invalid ~LST specification '{buf}'");
    // Split into top-level comma separated items, keeping {..} groups together.
    let mut items = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in inner.chars() {
        match c {
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => items.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    items.push(cur);
    let group = |s: &str| -> Vec<String> {
        let s = s.trim_matches([' ', '\t']);
        match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(inner) => inner.split(',').map(|v| v.trim_matches([' ', '\t']).to_string()).collect(),
            None => vec![s.to_string()],
        }
    };
    let mut it = items.iter();
    let vars = group(it.next().ok_or_else(invalid)?);
    if vars.iter().any(|v| v.is_empty()) {
        return Err(invalid());
    }
    let tuples: Vec<Vec<String>> = it.map(|s| group(s)).collect();
    if tuples.is_empty() || tuples.iter().any(|t| t.len() != vars.len()) {
        return Err(invalid());
    }
    Ok((vars, SeqValues::List { tuples, next: 0 }))
}

/// strtol(s, 0): decimal, 0x hex or 0 octal, with an optional sign.
fn parse_c_long(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// csh-style brace expansion (`a{b,c}d` -> `abd`, `acd`), as glob(3) with GLOB_BRACE.
pub fn expand_braces(pattern: &str) -> Vec<String> {
    let b = pattern.as_bytes();
    let Some(open) = pattern.find('{') else {
        return vec![pattern.to_string()];
    };
    let mut depth = 0;
    let mut close = None;
    let mut commas = Vec::new();
    for (i, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            b',' if depth == 1 => commas.push(i),
            _ => {}
        }
    }
    let Some(close) = close else {
        return vec![pattern.to_string()];
    };
    let prefix = &pattern[..open];
    let suffix = &pattern[close + 1..];
    let mut bounds = vec![open];
    bounds.extend(&commas);
    bounds.push(close);
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let alt = &pattern[w[0] + 1..w[1]];
        for expanded in expand_braces(&format!("{prefix}{alt}{suffix}")) {
            out.push(expanded);
        }
    }
    out
}

/// Splits a script command line the way keepalived does for notify and check scripts
/// (`alloc_strvec_quoted_escaped`): blanks separate words, `"` and `'` quote, and backslash
/// escapes (`\n`, `\t`, `\xHH`, `\NNN` octal, `\cC`, `\C`).
pub fn split_command(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let ws = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c');
    while i < chars.len() {
        while i < chars.len() && ws(chars[i]) {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while i < chars.len() {
            let c = chars[i];
            match (quote, c) {
                (_, '\\') => {
                    i += 1;
                    let Some(&e) = chars.get(i) else {
                        return Err(format!("Missing escape char at end: '{s}'"));
                    };
                    match e {
                        'x' if chars.get(i + 1).is_some_and(|c| c.is_ascii_hexdigit()) => {
                            i += 1;
                            let mut v: u32 = 0;
                            while let Some(d) = chars.get(i).and_then(|c| c.to_digit(16)) {
                                v = (v << 4 | d) & 0xff;
                                i += 1;
                            }
                            word.push(char::from(v as u8));
                        }
                        'c' if chars.get(i + 1).is_some() => {
                            let ctl = chars[i + 1] as u32 & 0x1f;
                            word.push(char::from_u32(ctl).unwrap_or('\0'));
                            i += 2;
                        }
                        '0'..='7' => {
                            let mut v: u32 = 0;
                            let mut n = 0;
                            while n < 3 {
                                match chars.get(i).and_then(|c| c.to_digit(8)) {
                                    Some(d) => {
                                        v = v * 8 + d;
                                        i += 1;
                                        n += 1;
                                    }
                                    None => break,
                                }
                            }
                            word.push(char::from((v & 0xff) as u8));
                        }
                        _ => {
                            word.push(match e {
                                'a' => '\x07',
                                'b' => '\x08',
                                'E' => '\x1b',
                                'f' => '\x0c',
                                'n' => '\n',
                                'r' => '\r',
                                't' => '\t',
                                'v' => '\x0b',
                                other => other,
                            });
                            i += 1;
                        }
                    }
                }
                (Some(q), c) if c == q => {
                    quote = None;
                    i += 1;
                }
                (Some(_), c) => {
                    word.push(c);
                    i += 1;
                }
                (None, '"' | '\'') => {
                    quote = Some(c);
                    i += 1;
                }
                (None, c) if ws(c) => break,
                (None, c) => {
                    word.push(c);
                    i += 1;
                }
            }
        }
        if let Some(q) = quote {
            return Err(format!("String '{s}': missing terminating {q}"));
        }
        out.push(word);
    }
    Ok(out)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn lines(src: &str, id: &str) -> (Vec<Vec<String>>, Diagnostics) {
        let mut d = Diagnostics::default();
        let mut lx = Lexer::new(LexOptions { config_id: id.into(), ..LexOptions::default() });
        lx.push_text(&mut d, "t.conf", src.to_string());
        let mut out = Vec::new();
        while let Some(l) = lx.next_line(&mut d) {
            out.push(l.words().map(str::to_string).collect());
        }
        (out, d)
    }

    fn flat(src: &str) -> Vec<String> {
        lines(src, "main").0.into_iter().map(|l| l.join(" ")).collect()
    }

    #[test]
    fn braces_split_lines() {
        assert_eq!(
            flat("real_server 1.2.3.4 80 { weight 1 }\nTCP_CHECK{\n}"),
            ["real_server 1.2.3.4 80", "{", "weight 1", "}", "TCP_CHECK", "{", "}"]
        );
    }

    #[test]
    fn comments_and_quotes() {
        assert_eq!(flat("a b # c\n! x\nsmtp \"x # y\" z ! w\nk \\#v"), ["a b", "smtp x # y z", "k #v"]);
        assert_eq!(flat("router_id 'ab\"c d\" e'"), ["router_id 'ab c d e'"]);
    }

    #[test]
    fn comment_ending_in_backslash_is_a_backslash_line() {
        assert_eq!(flat("#   install x \\\n"), ["\\"]);
    }

    #[test]
    fn conditionals() {
        let src = "@main a 1\n@backup a 2\n@^main b 1\n@^backup b 2\n@main\n";
        assert_eq!(lines(src, "main").0, [vec!["a", "1"], vec!["b", "2"]]);
    }

    #[test]
    fn definitions() {
        let src = "$X=10.0\n$Y=${X}.1\nip ${Y}\nip $Y\nip $Yz\n$E=\n$E\n";
        assert_eq!(flat(src), ["ip 10.0.1", "ip 10.0.1", "ip $Yz"]);
    }

    #[test]
    fn multiline_definition() {
        let src = "$RS= \\\nreal_server 1.1.1.${N} 80 { \\\n weight ${N} \\\n}\n$N=1\n$RS\n$N=2\n$RS\n";
        assert_eq!(
            flat(src),
            ["real_server 1.1.1.1 80", "{", "weight 1", "}", "real_server 1.1.1.2 80", "{", "weight 2", "}"]
        );
    }

    #[test]
    fn seq_and_lst() {
        assert_eq!(
            flat("~SEQ(S, 0, 3) ip 10.0.${S}.1"),
            ["ip 10.0.0.1", "ip 10.0.1.1", "ip 10.0.2.1", "ip 10.0.3.1"]
        );
        assert_eq!(flat("~SEQx(S, 0x90, 0x10, 0xc0) ${S}"), ["90", "a0", "b0", "c0"]);
        assert_eq!(flat("~SEQ(S,3) x${S}"), ["x1", "x2", "x3"]);
        assert_eq!(flat("~SEQ(A,1,2) ~SEQ(B,1,2) ${A}.${B}"), ["1.1", "1.2", "2.1", "2.2"]);
        assert_eq!(
            flat("~LST({IP, IP1}, {10,1},{20,4}) 192.168.${IP}.${IP1}"),
            ["192.168.10.1", "192.168.20.4"]
        );
        let (_, d) = lines("~SEQ(S, 1, -1, 5) x", "m");
        assert!(d.list[0].message.contains("Invalid ~SEQ values"), "{:?}", d.list);
    }

    #[test]
    fn extra_and_missing_braces() {
        let (_, d) = lines("}\n", "m");
        assert_eq!(d.list[0].message, "Extra '}' found");
        let (_, d) = lines("a {\n", "m");
        assert_eq!(d.list[0].message, "There are 1 missing '}'s or extra '{'s");
    }

    #[test]
    fn brace_expansion() {
        assert_eq!(expand_braces("a{b,c{d,e}}f"), ["abf", "acdf", "acef"]);
        assert_eq!(expand_braces("x"), ["x"]);
    }

    #[test]
    fn command_splitting() {
        assert_eq!(
            split_command("/bin/echo 'a b' c\\tz \"q\\\"\"").unwrap(),
            ["/bin/echo", "a b", "c\tz", "q\""]
        );
        assert!(split_command("a 'b").is_err());
    }

    #[test]
    fn columns() {
        let mut d = Diagnostics::default();
        let mut lx = Lexer::new(LexOptions::default());
        lx.push_text(&mut d, "t", "   priority   300\n".into());
        let l = lx.next_line(&mut d).unwrap();
        assert_eq!((l.loc.line, l.loc.column, l.loc_of(1).column), (1, 4, 15));
    }
}

//! Telegram's `parse_mode` parsers: a text with markup becomes the plain text a user sees plus
//! its entities, or the `can't parse entities` error Telegram answers for malformed markup.
//!
//! These follow the Bot API's formatting rules closely enough to catch what bots get wrong
//! (an unescaped `.` or `!` in MarkdownV2, an unclosed `<b>` in HTML); the exact byte offsets in
//! the error texts may differ from Telegram's in corner cases.

use serde::Serialize;

/// One formatting entity, as the Bot API's `MessageEntity` (offsets in UTF-16 code units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entity {
    /// `bold`, `italic`, `text_link`, `bot_command`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Start, in UTF-16 code units.
    pub offset: usize,
    /// Length, in UTF-16 code units.
    pub length: usize,
    /// The target of a `text_link`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The language of a `pre` block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The id of a `custom_emoji`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_emoji_id: Option<String>,
}

/// A parsed text: what the user sees and how it is formatted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Formatted {
    /// The plain text.
    pub text: String,
    /// The entities, sorted by offset.
    pub entities: Vec<Entity>,
}

/// Parses `input` under `parse_mode` (`None` or an unknown mode: the text as is, no entities).
///
/// # Errors
/// The message after `Bad Request: ` for a malformed text or an unknown parse mode.
pub fn parse(input: &str, parse_mode: Option<&str>) -> Result<Formatted, String> {
    // Telegram reads the mode name in any case ("HTML", "html", "markdownv2").
    let mode = parse_mode.map(str::to_ascii_lowercase);
    let result = match mode.as_deref() {
        None | Some("") => Ok(Formatted { text: input.to_owned(), entities: Vec::new() }),
        Some("markdownv2") => MarkdownV2::default().run(input),
        Some("markdown") => markdown_legacy(input),
        Some("html") => Html::default().run(input),
        Some(_) => return Err(format!("unsupported parse_mode \"{}\"", parse_mode.unwrap_or_default())),
    };
    result.map_err(|why| format!("can't parse entities: {why}")).map(|mut formatted| {
        formatted.entities.retain(|e| e.length > 0);
        formatted.entities.sort_by_key(|e| e.offset);
        formatted
    })
}

/// Length of `text` in UTF-16 code units, Telegram's unit for offsets and limits.
pub fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Entities Telegram adds by itself to a user's text: a leading `/command`.
pub fn auto_entities(text: &str) -> Vec<Entity> {
    if !text.starts_with('/') {
        return Vec::new();
    }
    let command: &str = text.split(char::is_whitespace).next().unwrap_or_default();
    if command.len() < 2 {
        return Vec::new();
    }
    vec![plain_entity("bot_command", 0, utf16_len(command))]
}

fn plain_entity(kind: &str, offset: usize, length: usize) -> Entity {
    Entity { kind: kind.to_owned(), offset, length, url: None, language: None, custom_emoji_id: None }
}

struct Open {
    kind: &'static str,
    start: usize,
    byte: usize,
}

/// Output text with a running UTF-16 length.
#[derive(Default)]
struct Out {
    text: String,
    len16: usize,
    entities: Vec<Entity>,
}

impl Out {
    fn push(&mut self, c: char) {
        self.text.push(c);
        self.len16 += c.len_utf16();
    }

    fn close(&mut self, open: Open, url: Option<String>, language: Option<String>) {
        let mut entity = plain_entity(open.kind, open.start, self.len16 - open.start);
        entity.url = url;
        entity.language = language;
        self.entities.push(entity);
    }

    fn finish(self) -> Formatted {
        Formatted { text: self.text, entities: self.entities }
    }
}

fn display_kind(kind: &str) -> &'static str {
    match kind {
        "bold" => "Bold",
        "italic" => "Italic",
        "underline" => "Underline",
        "strikethrough" => "Strikethrough",
        "spoiler" => "Spoiler",
        "code" => "Code",
        "pre" => "Pre",
        "text_link" => "TextUrl",
        _ => "BlockQuote",
    }
}

#[derive(Default)]
struct MarkdownV2 {
    out: Out,
    stack: Vec<Open>,
}

impl MarkdownV2 {
    fn run(mut self, input: &str) -> Result<Formatted, String> {
        let chars: Vec<(usize, char)> = input.char_indices().collect();
        let mut i = 0;
        let mut at_line_start = true;
        while i < chars.len() {
            let (byte, c) = chars[i];
            let next = chars.get(i + 1).map(|&(_, c)| c);
            let line_start = at_line_start;
            at_line_start = c == '\n';
            match c {
                '\\' => match next {
                    Some(escaped) if (escaped as u32) < 127 => {
                        self.out.push(escaped);
                        i += 2;
                        continue;
                    }
                    _ => self.out.push('\\'),
                },
                '\n' => {
                    if self.stack.last().is_some_and(|open| open.kind == "blockquote")
                        && chars.get(i + 1).is_none_or(|&(_, c)| c != '>')
                    {
                        let open = self.stack.pop().expect("checked above");
                        self.out.close(open, None, None);
                    }
                    self.out.push('\n');
                }
                '>' if line_start => {
                    if !self.stack.iter().any(|open| open.kind == "blockquote") {
                        self.stack.push(Open { kind: "blockquote", start: self.out.len16, byte });
                    }
                }
                '*' => self.toggle("bold", byte)?,
                '~' => self.toggle("strikethrough", byte)?,
                '_' if next == Some('_') => {
                    self.toggle("underline", byte)?;
                    i += 1;
                }
                '_' => self.toggle("italic", byte)?,
                '|' if next == Some('|') => {
                    self.toggle("spoiler", byte)?;
                    i += 1;
                }
                '`' => {
                    i = self.code(&chars, i)?;
                    continue;
                }
                '[' => self.stack.push(Open { kind: "text_link", start: self.out.len16, byte }),
                ']' if self.stack.last().is_some_and(|open| open.kind == "text_link") => {
                    i = self.link_target(&chars, i)?;
                    continue;
                }
                ']' | '(' | ')' | '>' | '#' | '+' | '-' | '=' | '|' | '{' | '}' | '.' | '!' => {
                    return Err(format!("Character '{c}' is reserved and must be escaped with the preceding '\\'"));
                }
                _ => self.out.push(c),
            }
            i += 1;
        }
        if let Some(open) = self.stack.pop() {
            if open.kind != "blockquote" || !self.stack.is_empty() {
                let open = self.stack.first().unwrap_or(&open);
                return Err(format!(
                    "Can't find end of {} entity at byte offset {}",
                    display_kind(open.kind),
                    open.byte
                ));
            }
            self.out.close(open, None, None);
        }
        Ok(self.out.finish())
    }

    fn toggle(&mut self, kind: &'static str, byte: usize) -> Result<(), String> {
        match self.stack.iter().rposition(|open| open.kind == kind) {
            Some(position) if position + 1 == self.stack.len() => {
                let open = self.stack.pop().expect("position is in range");
                self.out.close(open, None, None);
                Ok(())
            }
            Some(_) => {
                let top = self.stack.last().expect("stack is not empty");
                Err(format!("Can't find end of {} entity at byte offset {}", display_kind(top.kind), top.byte))
            }
            None => {
                self.stack.push(Open { kind, start: self.out.len16, byte });
                Ok(())
            }
        }
    }

    /// `code` or a ```` ``` ```` block starting at `chars[i]`; returns the index after it.
    fn code(&mut self, chars: &[(usize, char)], mut i: usize) -> Result<usize, String> {
        let byte = chars[i].0;
        let fence = chars.get(i..i + 3).is_some_and(|three| three.iter().all(|&(_, c)| c == '`'));
        let start = self.out.len16;
        let mut language = None;
        i += if fence { 3 } else { 1 };
        if fence {
            let rest: String = chars[i..].iter().map(|&(_, c)| c).take_while(|&c| c != '\n' && c != '`').collect();
            if chars.get(i + rest.chars().count()).is_some_and(|&(_, c)| c == '\n') {
                i += rest.chars().count() + 1;
                if !rest.trim().is_empty() {
                    language = Some(rest.trim().to_owned());
                }
            }
        }
        while i < chars.len() {
            let c = chars[i].1;
            if c == '\\' && chars.get(i + 1).is_some_and(|&(_, n)| n == '`' || n == '\\') {
                self.out.push(chars[i + 1].1);
                i += 2;
                continue;
            }
            if c == '`' {
                let closes = !fence || chars.get(i..i + 3).is_some_and(|t| t.iter().all(|&(_, c)| c == '`'));
                if closes {
                    let open = Open { kind: if fence { "pre" } else { "code" }, start, byte };
                    self.out.close(open, None, language);
                    return Ok(i + if fence { 3 } else { 1 });
                }
            }
            self.out.push(c);
            i += 1;
        }
        let kind = if fence { "Pre" } else { "Code" };
        Err(format!("Can't find end of {kind} entity at byte offset {byte}"))
    }

    /// The `](url)` of a text link whose `]` is at `chars[i]`; returns the index after it.
    fn link_target(&mut self, chars: &[(usize, char)], i: usize) -> Result<usize, String> {
        let open = self.stack.pop().expect("caller checked the top");
        if chars.get(i + 1).is_none_or(|&(_, c)| c != '(') {
            // `[text]` without a target is plain text in Telegram.
            return Ok(i + 1);
        }
        let mut url = String::new();
        let mut j = i + 2;
        while j < chars.len() {
            match chars[j].1 {
                '\\' if j + 1 < chars.len() => {
                    url.push(chars[j + 1].1);
                    j += 2;
                    continue;
                }
                ')' => {
                    self.out.close(open, Some(url), None);
                    return Ok(j + 1);
                }
                c => url.push(c),
            }
            j += 1;
        }
        Err(format!("Can't find end of a URL at byte offset {}", chars[i].0))
    }
}

fn markdown_legacy(input: &str) -> Result<Formatted, String> {
    let mut out = Out::default();
    let chars: Vec<(usize, char)> = input.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (byte, c) = chars[i];
        let kind = match c {
            '*' => "bold",
            '_' => "italic",
            '`' => "code",
            '[' => "text_link",
            _ => {
                out.push(c);
                i += 1;
                continue;
            }
        };
        let fence = c == '`' && chars.get(i..i + 3).is_some_and(|t| t.iter().all(|&(_, c)| c == '`'));
        let (close, skip) = match (kind, fence) {
            ("text_link", _) => (']', 1),
            (_, true) => ('`', 3),
            _ => (c, 1),
        };
        let start = out.len16;
        let mut j = i + skip;
        while j < chars.len() && chars[j].1 != close {
            out.push(chars[j].1);
            j += 1;
        }
        if j >= chars.len() {
            return Err(format!("Can't find end of the entity starting at byte offset {byte}"));
        }
        let mut url = None;
        j += skip;
        if kind == "text_link" && chars.get(j).is_some_and(|&(_, c)| c == '(') {
            let target: String = chars[j + 1..].iter().map(|&(_, c)| c).take_while(|&c| c != ')').collect();
            j += target.chars().count() + 2;
            url = Some(target);
        }
        let kind = if fence { "pre" } else { kind };
        if kind != "text_link" || url.is_some() {
            out.close(Open { kind, start, byte }, url, None);
        }
        i = j;
    }
    Ok(out.finish())
}

#[derive(Default)]
struct Html {
    out: Out,
    stack: Vec<(String, Open, Option<String>)>,
}

impl Html {
    fn run(mut self, input: &str) -> Result<Formatted, String> {
        let mut rest = input;
        while let Some(c) = rest.chars().next() {
            let byte = input.len() - rest.len();
            match c {
                '<' => {
                    let Some(end) = rest.find('>') else {
                        return Err(format!("Unclosed start tag at byte offset {byte}"));
                    };
                    let tag = &rest[1..end];
                    rest = &rest[end + 1..];
                    if let Some(name) = tag.strip_prefix('/') {
                        self.end_tag(name.trim(), byte)?;
                    } else {
                        self.start_tag(tag, byte)?;
                    }
                    continue;
                }
                '&' => {
                    if let Some((decoded, used)) = html_entity(rest) {
                        self.out.push(decoded);
                        rest = &rest[used..];
                        continue;
                    }
                    self.out.push('&');
                }
                _ => self.out.push(c),
            }
            rest = &rest[c.len_utf8()..];
        }
        if let Some((name, _, _)) = self.stack.last() {
            return Err(format!("Can't find end tag corresponding to start tag \"{name}\""));
        }
        Ok(self.out.finish())
    }

    fn start_tag(&mut self, tag: &str, byte: usize) -> Result<(), String> {
        let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        let attributes = &tag[name.len()..];
        let lower = name.to_ascii_lowercase();
        let attribute = |wanted: &str| html_attribute(attributes, wanted);
        let (kind, extra) = match lower.as_str() {
            "b" | "strong" => ("bold", None),
            "i" | "em" => ("italic", None),
            "u" | "ins" => ("underline", None),
            "s" | "strike" | "del" => ("strikethrough", None),
            "tg-spoiler" => ("spoiler", None),
            "span" if attribute("class").as_deref() == Some("tg-spoiler") => ("spoiler", None),
            "a" => ("text_link", attribute("href")),
            "code" => ("code", attribute("class").and_then(|c| c.strip_prefix("language-").map(str::to_owned))),
            "pre" => ("pre", None),
            "blockquote" => ("blockquote", None),
            "tg-emoji" => ("custom_emoji", attribute("emoji-id")),
            _ => return Err(format!("Unsupported start tag \"{lower}\" at byte offset {byte}")),
        };
        if kind == "code"
            && let Some((_, parent, language)) = self.stack.last_mut()
            && parent.kind == "pre"
        {
            // <pre><code class="language-x"> is one pre entity with a language.
            *language = extra;
            self.stack.push((lower, Open { kind: "", start: self.out.len16, byte }, None));
            return Ok(());
        }
        self.stack.push((lower, Open { kind, start: self.out.len16, byte }, extra));
        Ok(())
    }

    fn end_tag(&mut self, name: &str, byte: usize) -> Result<(), String> {
        let name = name.to_ascii_lowercase();
        let Some((open_name, open, extra)) = self.stack.pop() else {
            return Err(format!("Unexpected end tag at byte offset {byte}"));
        };
        if open_name != name {
            return Err(format!(
                "Unmatched end tag at byte offset {byte}, expected \"</{open_name}>\", found \"</{name}>\""
            ));
        }
        match open.kind {
            "" => {}
            "text_link" => self.out.close(open, extra, None),
            "pre" => self.out.close(open, None, extra),
            "custom_emoji" => {
                let mut entity = plain_entity("custom_emoji", open.start, self.out.len16 - open.start);
                entity.custom_emoji_id = extra;
                self.out.entities.push(entity);
            }
            _ => self.out.close(open, None, None),
        }
        Ok(())
    }
}

fn html_attribute(attributes: &str, wanted: &str) -> Option<String> {
    let position = attributes.find(&format!("{wanted}="))?;
    let value = &attributes[position + wanted.len() + 1..];
    let (quote, value) = match value.chars().next()? {
        q @ ('"' | '\'') => (Some(q), &value[1..]),
        _ => (None, value),
    };
    let end = match quote {
        Some(q) => value.find(q)?,
        None => value.find(char::is_whitespace).unwrap_or(value.len()),
    };
    Some(value[..end].to_owned())
}

/// Decodes `&lt;`, `&gt;`, `&amp;`, `&quot;` and numeric references at the start of `rest`.
fn html_entity(rest: &str) -> Option<(char, usize)> {
    let end = rest.find(';')?;
    let name = &rest[1..end];
    let decoded = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((decoded, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(formatted: &Formatted) -> Vec<(&str, usize, usize)> {
        formatted.entities.iter().map(|e| (e.kind.as_str(), e.offset, e.length)).collect()
    }

    #[test]
    fn plain_text_is_untouched() {
        let parsed = parse("a.b!", None).unwrap();
        assert_eq!(parsed.text, "a.b!");
        assert!(parsed.entities.is_empty());
    }

    #[test]
    fn markdown_v2_entities_and_escapes() {
        let parsed = parse(r"*bold* _it_ __u__ ~s~ ||sp|| `c\`` 1\.5\!", Some("MarkdownV2")).unwrap();
        assert_eq!(parsed.text, "bold it u s sp c` 1.5!");
        assert_eq!(
            kinds(&parsed),
            vec![
                ("bold", 0, 4),
                ("italic", 5, 2),
                ("underline", 8, 1),
                ("strikethrough", 10, 1),
                ("spoiler", 12, 2),
                ("code", 15, 2)
            ]
        );
    }

    #[test]
    fn markdown_v2_rejects_unescaped_reserved_characters() {
        let error = parse("Done. Enjoy!", Some("MarkdownV2")).unwrap_err();
        assert_eq!(
            error,
            "can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'"
        );
    }

    #[test]
    fn markdown_v2_unclosed_entity() {
        let error = parse("*bold", Some("MarkdownV2")).unwrap_err();
        assert_eq!(error, "can't parse entities: Can't find end of Bold entity at byte offset 0");
    }

    #[test]
    fn markdown_v2_links_and_pre() {
        let parsed = parse("[site](http://x.y/a\\)b) ```rust\nfn x()```", Some("MarkdownV2")).unwrap();
        assert_eq!(parsed.text, "site fn x()");
        assert_eq!(parsed.entities[0].url.as_deref(), Some("http://x.y/a)b"));
        assert_eq!(parsed.entities[1].language.as_deref(), Some("rust"));
    }

    #[test]
    fn utf16_offsets() {
        let parsed = parse("😀 *x*", Some("MarkdownV2")).unwrap();
        assert_eq!(kinds(&parsed), vec![("bold", 3, 1)]);
    }

    #[test]
    fn html_tags_entities_and_errors() {
        let parsed = parse(
            "<b>a</b> &lt;<a href=\"http://e\">l</a> <pre><code class=\"language-py\">x</code></pre>",
            Some("HTML"),
        )
        .unwrap();
        assert_eq!(parsed.text, "a <l x");
        assert_eq!(kinds(&parsed), vec![("bold", 0, 1), ("text_link", 3, 1), ("pre", 5, 1)]);
        assert_eq!(parsed.entities[2].language.as_deref(), Some("py"));
        assert!(
            parse("<b>x", Some("HTML")).unwrap_err().contains("Can't find end tag corresponding to start tag \"b\"")
        );
        assert!(parse("<div>x</div>", Some("HTML")).unwrap_err().contains("Unsupported start tag \"div\""));
        assert!(parse("<b>x</i>", Some("HTML")).unwrap_err().contains("Unmatched end tag"));
    }

    #[test]
    fn legacy_markdown() {
        let parsed = parse("*b* [l](http://u) 1.5!", Some("Markdown")).unwrap();
        assert_eq!(parsed.text, "b l 1.5!");
        assert!(parse("*open", Some("Markdown")).is_err());
    }

    #[test]
    fn commands_get_a_bot_command_entity() {
        assert_eq!(auto_entities("/start ref"), vec![plain_entity("bot_command", 0, 6)]);
        assert!(auto_entities("hello").is_empty());
    }
}

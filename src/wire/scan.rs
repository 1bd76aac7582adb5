//! A byte cursor for the decoders' fast paths ([`super::TradeFields::parse_canonical`],
//! [`super::OrderFields::scan`]): each reads the common, simple form of a message straight from
//! the bytes and declines (`None`) anything it is not sure serde_json reads the same way, leaving
//! the decision and the error message to serde_json.

/// A cursor over a JSON message that is valid UTF-8 as a whole (checked once, up front: what
/// serde_json accepts always is), so strings and numbers are sliced out without checking again.
pub(super) struct Scan<'a> {
    s: &'a str,
    pub i: usize,
}

impl<'a> Scan<'a> {
    /// `None` when `b` is not UTF-8 (serde_json refuses such a message, or reads it with
    /// escapes the fast paths do not take).
    pub fn new(b: &'a [u8]) -> Option<Self> {
        let s = std::str::from_utf8(b).ok()?;
        Some(Scan { s, i: 0 })
    }

    /// The message's bytes.
    #[inline]
    fn b(&self) -> &'a [u8] {
        self.s.as_bytes()
    }

    /// The text between byte offsets `start` and `end` (both on character boundaries: they
    /// follow or precede an ASCII byte the caller matched).
    #[inline]
    fn text(&self, start: usize, end: usize) -> Option<&'a str> {
        self.s.get(start..end)
    }

    /// The next byte, not consumed.
    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.b().get(self.i).copied()
    }

    /// `true` when every byte was read.
    #[inline]
    pub fn at_end(&self) -> bool {
        self.i == self.b().len()
    }

    /// Exactly the bytes `l`.
    #[inline]
    pub fn lit(&mut self, l: &[u8]) -> Option<()> {
        let end = self.i.checked_add(l.len())?;
        (self.b().get(self.i..end)? == l).then(|| self.i = end)
    }

    /// JSON whitespace (what serde_json skips: space, tab, line feed, carriage return).
    #[inline]
    pub fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b().get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    /// A JSON number token: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    pub fn number(&mut self) -> Option<&'a str> {
        let start = self.i;
        if self.b().get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let first = *self.b().get(self.i)?;
        let int = self.digits();
        if int == 0 || (first == b'0' && int > 1) {
            return None;
        }
        if self.b().get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.b().get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b().get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        self.text(start, self.i)
    }

    /// A non-negative integer token that fits a `u64` (what serde_json reads as a `u64`; a
    /// fraction, an exponent or a sign is declined).
    pub fn unsigned(&mut self) -> Option<u64> {
        let text = self.number()?;
        if !text.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    }

    /// A string without escapes or control characters, borrowed (its text, without quotes).
    pub fn plain_str(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let start = self.i;
        let len = self.b()[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if self.b()[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        self.text(start, start + len)
    }

    /// The raw text of a number token or of a plain string (with its quotes): what
    /// `serde_json::value::RawValue::get` returns for either.
    pub fn raw_number_or_str(&mut self) -> Option<&'a str> {
        let start = self.i;
        match self.peek()? {
            b'"' => {
                self.plain_str()?;
                self.text(start, self.i)
            }
            _ => self.number(),
        }
    }
}

//! Falco's condition language over pipeline events (work in progress).

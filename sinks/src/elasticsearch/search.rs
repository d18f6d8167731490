//! `auditflow query` against an `elasticsearch` sink's indices (filled in below).

//! Fields of the broker message an event came in ([`MessageOrigin`], set by
//! the `kafka` source): `kafka.topic`, `kafka.partition`, `kafka.offset`,
//! `kafka.key` and `kafka.header[NAME]`. They are missing on events that did
//! not come from a message.

use std::borrow::Cow;

use super::context::EvalContext;
use super::fields::{no_argument, FieldError, FieldExtractor};
use super::value::{FieldRef, Scalar};
use crate::event::MessageOrigin;

/// The names of the origin fields (`kafka.header` takes the header's name in brackets).
pub const ORIGIN_FIELD_NAMES: [&str; 5] = [
    "kafka.topic",
    "kafka.partition",
    "kafka.offset",
    "kafka.key",
    "kafka.header",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginField {
    Topic,
    Partition,
    Offset,
    Key,
    Header(String),
}

/// The extractor of an origin field, if `name` is one.
pub fn resolve(
    name: &str,
    arg: Option<&str>,
) -> Option<Result<Box<dyn FieldExtractor>, FieldError>> {
    let field = match name {
        "kafka.topic" => OriginField::Topic,
        "kafka.partition" => OriginField::Partition,
        "kafka.offset" => OriginField::Offset,
        "kafka.key" => OriginField::Key,
        "kafka.header" => return Some(header_field(arg)),
        _ => return None,
    };
    Some(no_argument(name, arg).map(|()| Box::new(field) as Box<dyn FieldExtractor>))
}

fn header_field(arg: Option<&str>) -> Result<Box<dyn FieldExtractor>, FieldError> {
    match arg {
        Some(header) if !header.is_empty() => Ok(Box::new(OriginField::Header(header.to_string()))),
        _ => Err(FieldError::Argument(
            "`kafka.header` needs the header's name in brackets, as in `kafka.header[cluster]`"
                .to_string(),
        )),
    }
}

impl FieldExtractor for OriginField {
    fn read<'c>(&self, ctx: &'c EvalContext<'_>) -> FieldRef<'c> {
        let Some(origin) = ctx.event().meta.origin.as_deref() else {
            return FieldRef::Missing;
        };
        read_origin(self, origin)
    }
}

fn read_origin<'c>(field: &OriginField, origin: &'c MessageOrigin) -> FieldRef<'c> {
    match field {
        OriginField::Topic => FieldRef::str(&origin.topic),
        OriginField::Partition => FieldRef::One(Scalar::Int(i64::from(origin.partition))),
        OriginField::Offset => FieldRef::One(Scalar::Int(origin.offset)),
        OriginField::Key => FieldRef::opt_str(origin.key.as_deref()),
        OriginField::Header(name) => origin.header(name).map_or(FieldRef::Missing, |value| {
            FieldRef::One(Scalar::Str(Cow::Borrowed(value)))
        }),
    }
}

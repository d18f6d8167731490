//! The component types this binary knows.

use auditflow_core::component::Catalog;

/// Every source, transform and sink type.
pub fn full() -> Catalog {
    let mut catalog = Catalog::new();
    auditflow_sources::register(&mut catalog);
    auditflow_transforms::register(&mut catalog);
    auditflow_sinks::register(&mut catalog);
    catalog
}

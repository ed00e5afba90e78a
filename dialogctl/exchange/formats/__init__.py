"""One module per export format; each defines its :class:`~dialogctl.exchange.records.ExportFormat` record."""

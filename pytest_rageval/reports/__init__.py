"""Reports of a run, one module per format, all rendered from the same JSON-safe
question records: :mod:`.summary` groups them into sets, :mod:`.terminal`, :mod:`.json`,
:mod:`.markdown` and :mod:`.html` write them out."""

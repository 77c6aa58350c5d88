"""A memory's content on its way in: fetch a page safely (fetch.py), extract readable text from
a page (extract.py) or an uploaded file (files.py), scrub secrets before any AI call (scrub.py)."""

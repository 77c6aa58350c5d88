"""Capture pipeline: fetch a page safely, extract readable text, scrub secrets before AI calls."""

"""Consultation: themes, draft commitments, the window, the library, contributions."""

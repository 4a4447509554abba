"""One command from raw text to a released model: profiles, stages, report, promotion."""

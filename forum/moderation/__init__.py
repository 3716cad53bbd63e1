"""Moderation and systematisation: the queue, tags, hiding, groups, responses, audit."""

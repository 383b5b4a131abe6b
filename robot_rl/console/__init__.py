"""The intervention console: a web page for the person who supervises training (hub, server, page)."""

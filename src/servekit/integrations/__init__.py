"""Embedding servekit in other web frameworks (`servekit.integrations.flask`).

Each integration imports its framework lazily, so `import servekit` never needs it.
"""

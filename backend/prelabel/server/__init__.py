"""Tool-free HTTP mechanics shared by prelabel's servers: app factory, limits, auth, observability, fetching."""

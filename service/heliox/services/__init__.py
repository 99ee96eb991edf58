"""What the routes do, below HTTP: units of work on the database with the cache around them."""

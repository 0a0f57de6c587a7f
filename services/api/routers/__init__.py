"""One router per resource; each route declares the role it needs."""

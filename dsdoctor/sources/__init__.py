"""Front doors that produce events: text logs, dsdoctor's own event files, live hooks."""

"""overview: the read model — answers that span apps (the JSON summary; the admin dashboard and
cost reports to come), each app read through its selectors only. No models of its own."""

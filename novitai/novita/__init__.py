"""The one Novita client (v1 API). Nothing else in novitai talks to Novita."""

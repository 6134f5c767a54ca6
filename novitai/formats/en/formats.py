"""Dates in the admin: ISO order, to the second, in UTC, the same everywhere (lists, pages, the
console's timeline). Django's en formats ("Dec. 2, 2026, 1:19 p.m.") dropped the seconds."""

DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
DATETIME_FORMAT = "Y-m-d H:i:s e"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s e"
MONTH_DAY_FORMAT = "F j"
YEAR_MONTH_FORMAT = "F Y"
FIRST_DAY_OF_WEEK = 1

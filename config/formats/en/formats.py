"""Date and time display for the English locale (FORMAT_MODULE_PATH): one format everywhere in
the admin, the same as its timelines and tables print ("Y-m-d H:i:s"), instead of Django's
"Dec. 1, 2026, 9:08 p.m." in lists and fields next to ISO times in the booking page. Only
display formats: the input formats stay Django's."""

DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
TIME_FORMAT = "H:i:s"

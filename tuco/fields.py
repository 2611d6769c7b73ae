"""Model fields shared by the apps."""

from django.db import models


class BytewiseCharField(models.CharField):
    """Text compared byte for byte: object ids and normalized identifiers (E.164
    phones, lowercased emails), which are only ever matched exactly.

    On Postgres the column gets the "C" collation, so its comparisons (index look-ups,
    foreign key checks, joins) are plain byte comparisons instead of going through the
    database's locale (even `C.UTF-8` is a locale to Postgres 15). Foreign keys to
    such a column get the same collation (Django copies it to them). On the lead
    import, this took Postgres's share of 100,000 new leads from about 5.1 to 4.2 s
    (README, Architecture). SQLite compares bytes already and knows no "C".
    """

    def db_parameters(self, connection):
        parameters = super().db_parameters(connection)
        if connection.vendor == "postgresql":
            parameters["collation"] = "C"
        return parameters

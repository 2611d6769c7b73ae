"""Model fields shared by the apps."""

from django.db import models


class BytewiseCharField(models.CharField):
    """Text compared byte for byte: object ids and normalized identifiers (E.164
    phones, lowercased emails), which are only ever matched exactly.

    On Postgres the column gets the "C" collation, so its comparisons (index look-ups,
    foreign key checks, joins) are plain byte comparisons instead of going through the
    database's locale (even `C.UTF-8` is a locale to Postgres 15), as SQLite's
    comparisons of any text already are (it knows no "C" collation). Foreign keys
    to such a column get the same collation: Django copies it to them. The lead
    import's figures are in the README (Architecture).
    """

    def db_parameters(self, connection):
        parameters = super().db_parameters(connection)
        if connection.vendor == "postgresql":
            parameters["collation"] = "C"
        return parameters

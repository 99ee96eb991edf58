"""SQLAlchemy models. Importing this package registers every table on ``Base.metadata``."""

from heliox.models.base import Base
from heliox.models.item import Item

__all__ = ["Base", "Item"]

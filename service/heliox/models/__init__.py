"""SQLAlchemy models. Importing this package registers every table on ``Base.metadata``."""

from heliox.models.api_key import ApiKey
from heliox.models.base import Base
from heliox.models.item import Item

__all__ = ["ApiKey", "Base", "Item"]

"""Loading question sets from YAML, JSON, JSONL, CSV and llama-index datasets (no pytest here).

``model`` is a question and a loaded file, ``syntax`` reads a file's text as YAML or JSON,
``fields`` checks what the file gives, ``files`` puts them together per file type.
"""

from __future__ import annotations

from pytest_rageval.questions.fields import QUESTION_KEYS as QUESTION_KEYS
from pytest_rageval.questions.fields import did_you_mean as did_you_mean
from pytest_rageval.questions.files import CSV_COLUMNS as CSV_COLUMNS
from pytest_rageval.questions.files import FILE_KEYS as FILE_KEYS
from pytest_rageval.questions.files import NOT_A_QUESTION_FILE as NOT_A_QUESTION_FILE
from pytest_rageval.questions.files import SUFFIXES as SUFFIXES
from pytest_rageval.questions.files import is_question_file as is_question_file
from pytest_rageval.questions.files import load_file as load_file
from pytest_rageval.questions.model import DEFAULT_QUERY_ENGINE as DEFAULT_QUERY_ENGINE
from pytest_rageval.questions.model import Question as Question
from pytest_rageval.questions.model import QuestionFile as QuestionFile
from pytest_rageval.questions.model import QuestionFileError as QuestionFileError
from pytest_rageval.questions.model import as_question as as_question
from pytest_rageval.questions.model import slugify as slugify
from pytest_rageval.questions.syntax import ALIAS_LIMIT as ALIAS_LIMIT
from pytest_rageval.questions.syntax import LINE_KEY as LINE_KEY
from pytest_rageval.questions.syntax import _line_loader as _line_loader
from pytest_rageval.questions.syntax import parse_yaml as parse_yaml
from pytest_rageval.questions.syntax import read_text as read_text

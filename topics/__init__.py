"""Segue's topic contracts: names, event schemas, decisions and the dead-letter format."""

from topics.catalogue import CHANNELS, INPUT_SOURCES, TopicNames, TopicSpec, topic_catalogue
from topics.decisions import Candidate, Decision, decision_id
from topics.events import Event, Rejection, parse_event

__all__ = [
    "CHANNELS",
    "INPUT_SOURCES",
    "Candidate",
    "Decision",
    "Event",
    "Rejection",
    "TopicNames",
    "TopicSpec",
    "decision_id",
    "parse_event",
    "topic_catalogue",
]

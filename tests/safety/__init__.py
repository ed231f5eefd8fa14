"""Tests of the content filter and the disclosure marks (issue 14): CPU, nothing downloaded."""

"""Grading with nbgrader: course folders, submissions, autograding, scores."""

"""The operator's word in the loop: verdicts on edge predictions and what they feed.

``store``: a verdict as a UNS feedback message, recorded through the broker or straight into
bronze; the labels read back. ``queue``: what to show a person first (active learning).
``page``: the local labeling page. ``metrics``: flag precision per edge (performance drift).
``recalibrate``: an edge's threshold from its labelled windows. ``training``: labels joined
onto a family's feature rows for the next training set.
"""

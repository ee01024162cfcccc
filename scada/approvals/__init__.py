"""Four-eyes approvals: a request that a second user with the ``approve`` permission approves or
rejects before the action runs, exactly once, with both users recorded.

Features register an executor per kind of request (:meth:`ApprovalService.register`) and ask
for approval instead of acting (:meth:`ApprovalService.request`); the prepaid engine's rule for
money creation lives in :mod:`scada.prepaid.approvals`."""

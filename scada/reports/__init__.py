"""Reports over interval history and the ledger: ``energy`` (consumption by time-of-use period
with the money charged), ``compare`` (year-on-year and period-on-period), ``finance`` (what moved
the balances, reconciled with the ledger) and ``arrears`` (aged debts); exported as JSON, CSV,
XLSX (:mod:`scada.reports.xlsx`) and, through the HMI's print templates, PDF; scheduled reports
e-mailed as XLSX (:mod:`scada.reports.schedule`)."""

"""Operations: batch and scheduled jobs, pre-set accounts, meter-side settings, tenant messages.

Import the modules themselves (``scada.operations.service`` ...).
"""

__all__: list[str] = []

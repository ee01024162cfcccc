// The cashier: after a recharge or refund, the receipt; reversals from the ledger.
import { bindLedger } from "./ledger.js";

for (const id of ["recharge", "refund"]) {
  const form = document.getElementById(id);
  if (!form) continue;
  form.onApiSuccess = (result) => {
    window.location.assign(`/cashier/receipt/${encodeURIComponent(form.dataset.room)}/${result.entry.id}`);
  };
}
bindLedger(() => window.location.reload());

// Account forms: contact fields left empty are sent as empty (the API keeps the contact whole).
for (const form of document.querySelectorAll("#settings, #open")) {
  form.onApiBody = (body) => {
    if (body.contact) body.contact = { name: "", ...body.contact };
    return body;
  };
}

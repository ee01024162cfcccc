// Tariff forms: a flat price or a JSON definition becomes the API's "definition"; room lists
// become arrays.
import { t } from "./common.js";

for (const form of document.querySelectorAll("form[data-definition]")) {
  form.onApiBody = (body) => {
    const { price, definition, ...rest } = body;
    let parsed;
    if (definition && definition.trim()) {
      try {
        parsed = JSON.parse(definition);
      } catch (err) {
        throw new Error(t("js.bad_json", { error: err.message }));
      }
    } else if (price) {
      parsed = { price };
    } else {
      throw new Error(t("js.price_or_definition"));
    }
    return { ...rest, definition: parsed };
  };
}
for (const form of document.querySelectorAll("form[data-rooms]")) {
  form.onApiBody = (body) => ({ ...body, rooms: body.rooms.split(/[\s,;]+/).filter(Boolean) });
}

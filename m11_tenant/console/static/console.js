// The console's only script. Every page works without it; it adds four conveniences:
// sliders and colour pickers that follow their text boxes, model lists that follow the
// chosen plan, and focus on the first message after a refused save.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // A slider / picker mirrors the input named in data-sync, both ways.
  for (const mirror of document.querySelectorAll("[data-sync]")) {
    const input = document.getElementById(mirror.dataset.sync);
    if (!input) continue;
    mirror.addEventListener("input", () => { input.value = mirror.value; });
    input.addEventListener("input", () => {
      const ok = mirror.type === "color" ? /^#[0-9a-fA-F]{6}$/.test(input.value) : input.value !== "";
      if (ok) mirror.value = input.value;
    });
  }

  // Model lists offer only the models the selected plan allows (data/plans.json).
  const form = document.getElementById("config-form");
  const plan = document.getElementById("f-plan");
  if (form && plan && form.dataset.plans) {
    const plans = JSON.parse(form.dataset.plans);
    const follow = () => {
      const allowed = plans[plan.value];
      if (!allowed) return;
      for (const select of form.querySelectorAll("select[data-models]")) {
        for (const option of select.options) {
          if (option.value === "") continue;
          const off = !allowed.models.includes(option.value);
          option.disabled = off;
          option.hidden = off;
        }
        if (select.selectedOptions.length && select.selectedOptions[0].disabled) {
          const first = [...select.options].find((o) => !o.disabled);
          if (first) select.value = first.value;
        }
      }
      for (const cap of form.querySelectorAll("[data-cap]")) cap.textContent = allowed.cap;
      const maxTokens = document.getElementById("f-max-tokens");
      if (maxTokens) maxTokens.max = allowed.cap;
    };
    plan.addEventListener("change", follow);
  }

  // After a refused save, a conflict or an error, start the keyboard where the message is.
  const first = document.getElementById("error-summary") || document.getElementById("conflict");
  if (first) first.focus();
});

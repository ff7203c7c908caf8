/* The segment builder (templates/admin/campaigns/segment/change_form.html).
   Turns the segment's JSON conditions field into one row of inputs per condition,
   writes the JSON back on every change, and asks the count endpoint how many
   contacts match (and shows the first of them). Vanilla JS, no build step. */
"use strict";
(function () {
    const DEBOUNCE_MS = 300;
    const TYPES = [
        ["list", "Member of list"],
        ["country", "Country is"],
        ["field", "Contact field"],
        ["attribute", "Attribute"],
        ["opted_in", "Opted in"],
        ["received", "Received campaign"],
        ["clicked", "Clicked a link in campaign"],
        ["quiet", "No marketing message in the last"],
    ];
    const TEXT_OPS = [
        ["equals", "is"],
        ["contains", "contains"],
        ["is_set", "is set"],
    ];
    const NUMBER_OPS = [
        ["gt", "> (number)"],
        ["gte", "≥ (number)"],
        ["lt", "< (number)"],
        ["lte", "≤ (number)"],
    ];
    const FIELD_LABELS = { first_name: "First name", last_name: "Last name", phone: "Phone" };

    function byId(id) {
        return document.getElementById(id);
    }

    function make(tag, attrs, children) {
        const element = document.createElement(tag);
        for (const [name, value] of Object.entries(attrs || {})) {
            if (name === "text") {
                element.textContent = value;
            } else if (value !== null && value !== undefined && value !== false) {
                element.setAttribute(name, value === true ? "" : String(value));
            }
        }
        for (const child of children || []) {
            element.append(child);
        }
        return element;
    }

    function choice(key, choices, value, label) {
        const select = make("select", { "data-key": key, "aria-label": label });
        for (const [optionValue, optionLabel] of choices) {
            const option = new Option(optionLabel, String(optionValue));
            select.append(option);
        }
        if (value !== undefined && value !== null) {
            select.value = String(value);
        }
        return select;
    }

    function field(key, value, attrs) {
        return make("input", {
            "data-key": key,
            value: value === undefined || value === null ? "" : value,
            type: "text",
            ...attrs,
        });
    }

    function defaults(type, options) {
        switch (type) {
            case "list":
                return { type, list: options.lists.length ? options.lists[0].id : null };
            case "country":
                return { type, countries: ["US"] };
            case "field":
                return { type, field: "first_name", op: "equals", value: "" };
            case "attribute":
                return { type, key: "", op: "equals", value: "" };
            case "opted_in":
                return { type, op: "after", date: new Date().toISOString().slice(0, 10) };
            case "received":
            case "clicked":
                return {
                    type,
                    campaign: options.campaigns.length ? options.campaigns[0].id : null,
                };
            default:
                return { type: "quiet", days: 30 };
        }
    }

    function parts(condition, options) {
        const op = condition.op;
        switch (condition.type) {
            case "list":
                return [
                    choice(
                        "list",
                        options.lists.map((item) => [item.id, item.name]),
                        condition.list,
                        "List",
                    ),
                ];
            case "country":
                return [
                    field("countries", (condition.countries || []).join(", "), {
                        size: 12,
                        placeholder: "US, CA",
                        "aria-label": "Country codes",
                    }),
                ];
            case "field":
                return [
                    choice("field", Object.entries(FIELD_LABELS), condition.field, "Field"),
                    choice("op", TEXT_OPS, op, "Test"),
                    field("value", condition.value, {
                        hidden: op === "is_set",
                        "aria-label": "Value",
                    }),
                ];
            case "attribute":
                return [
                    field("key", condition.key, {
                        size: 12,
                        placeholder: "city",
                        "aria-label": "Attribute name",
                    }),
                    choice("op", TEXT_OPS.concat(NUMBER_OPS), op, "Test"),
                    field("value", condition.value, {
                        hidden: op === "is_set",
                        "aria-label": "Value",
                    }),
                ];
            case "opted_in":
                return [
                    choice(
                        "op",
                        [
                            ["before", "before"],
                            ["after", "after"],
                        ],
                        op,
                        "Before or after",
                    ),
                    field("date", condition.date, { type: "date", "aria-label": "Date" }),
                ];
            case "received":
            case "clicked":
                return [
                    choice(
                        "campaign",
                        options.campaigns.map((item) => [item.id, item.name]),
                        condition.campaign,
                        "Campaign",
                    ),
                ];
            default:
                return [
                    field("days", condition.days, {
                        type: "number",
                        min: 1,
                        max: 3650,
                        "aria-label": "Days",
                    }),
                    make("span", { text: "days" }),
                ];
        }
    }

    function renderRow(condition, options) {
        const negate = make("input", {
            type: "checkbox",
            "data-key": "negate",
            checked: Boolean(condition.negate),
        });
        const row = make("div", { class: "segment-condition" }, [
            choice("type", TYPES, condition.type, "Condition"),
            make("label", { class: "segment-negate" }, [negate, " not"]),
            ...parts(condition, options),
            make("button", {
                type: "button",
                class: "button segment-remove",
                text: "Remove",
            }),
        ]);
        return row;
    }

    function read(row) {
        const value = (key) => {
            const input = row.querySelector(`[data-key="${key}"]`);
            return input ? input.value : undefined;
        };
        const condition = { type: value("type") };
        const id = (text) => (text === undefined || text === "" ? null : Number(text));
        switch (condition.type) {
            case "list":
                condition.list = id(value("list"));
                break;
            case "country":
                condition.countries = value("countries")
                    .split(/[\s,;]+/)
                    .filter(Boolean)
                    .map((code) => code.toUpperCase());
                break;
            case "field":
            case "attribute":
                if (condition.type === "field") {
                    condition.field = value("field");
                } else {
                    condition.key = value("key");
                }
                condition.op = value("op");
                if (condition.op !== "is_set") {
                    const text = value("value");
                    const numeric = NUMBER_OPS.some(([name]) => name === condition.op);
                    condition.value = numeric && text.trim() !== "" && !Number.isNaN(Number(text))
                        ? Number(text)
                        : text;
                }
                break;
            case "opted_in":
                condition.op = value("op");
                condition.date = value("date");
                break;
            case "received":
            case "clicked":
                condition.campaign = id(value("campaign"));
                break;
            default:
                condition.days = Number(value("days"));
        }
        if (row.querySelector('[data-key="negate"]').checked) {
            condition.negate = true;
        }
        return condition;
    }

    function init() {
        const panel = byId("segment-builder");
        const textarea = byId("id_conditions");
        const optionsScript = byId("segment-builder-options");
        if (!panel || !textarea || !optionsScript) {
            return;
        }
        let conditions;
        try {
            // A new segment's field holds "null": no conditions yet.
            conditions = JSON.parse(textarea.value || "[]") ?? [];
        } catch (error) {
            return; // Not JSON (typed so and sent back with an error): leave it as it is.
        }
        if (!Array.isArray(conditions)) {
            return;
        }
        const options = JSON.parse(optionsScript.textContent);
        const form = panel.closest("form");
        const rows = byId("segment-conditions");
        const addButton = byId("segment-add");
        const csrf = form.querySelector("[name=csrfmiddlewaretoken]");
        let timer = null;
        let inFlight = false;
        let again = false;

        const jsonRow = textarea.closest(".form-row") || textarea;
        jsonRow.classList.add("segment-json-hidden");
        addButton.hidden = false;

        function render() {
            rows.replaceChildren(...conditions.map((condition) => renderRow(condition, options)));
        }

        function save() {
            textarea.value = JSON.stringify(conditions);
            schedule();
        }

        function match() {
            const checked = form.querySelector("input[name=match]:checked");
            return checked ? checked.value : "all";
        }

        function schedule() {
            clearTimeout(timer);
            panel.dataset.pending = "true";
            timer = setTimeout(count, DEBOUNCE_MS);
        }

        function showProblems(problems) {
            const list = byId("segment-problems");
            list.replaceChildren(...problems.map((text) => make("li", { text })));
        }

        function showSample(sample, hidden) {
            const table = byId("segment-sample");
            table.hidden = hidden || sample.length === 0;
            table.tBodies[0].replaceChildren(
                ...sample.map((contact) =>
                    make("tr", {}, [
                        make("td", { text: contact.name || "No name" }),
                        make("td", { text: contact.phone }),
                        make("td", { text: contact.country }),
                        make("td", { text: contact.opted_out ? "opted out" : "" }),
                    ]),
                ),
            );
        }

        async function count() {
            if (inFlight) {
                again = true;
                return;
            }
            if (!conditions.length) {
                byId("segment-count").textContent = "Add a condition to see who matches.";
                showProblems([]);
                showSample([], true);
                panel.dataset.pending = "false";
                return;
            }
            inFlight = true;
            const data = new URLSearchParams();
            data.set("match", match());
            data.set("conditions", JSON.stringify(conditions));
            try {
                const response = await fetch(panel.dataset.countUrl, {
                    method: "POST",
                    body: data,
                    headers: { "X-CSRFToken": csrf ? csrf.value : "" },
                    credentials: "same-origin",
                });
                const answer = await response.json();
                if (!response.ok) {
                    showProblems(answer.problems || ["The conditions could not be counted."]);
                    byId("segment-count").textContent = "…";
                    showSample([], true);
                } else {
                    showProblems([]);
                    const contacts = Number(answer.contacts).toLocaleString("en-US");
                    const reachable = Number(answer.reachable).toLocaleString("en-US");
                    byId("segment-count").textContent =
                        `${contacts} contact${answer.contacts === 1 ? "" : "s"} match, ` +
                        `${reachable} of them can get marketing (not opted out or suppressed).`;
                    showSample(answer.sample, answer.contacts_hidden);
                }
            } catch (error) {
                showProblems(["The count could not be updated (connection problem or expired session)."]);
            } finally {
                inFlight = false;
                panel.dataset.pending = "false";
                if (again) {
                    again = false;
                    schedule();
                }
            }
        }

        rows.addEventListener("change", (event) => {
            const row = event.target.closest(".segment-condition");
            if (!row) {
                return;
            }
            const index = Array.from(rows.children).indexOf(row);
            if (event.target.dataset.key === "type") {
                conditions[index] = defaults(event.target.value, options);
                row.replaceWith(renderRow(conditions[index], options));
            } else {
                conditions[index] = read(row);
                if (event.target.dataset.key === "op") {
                    row.replaceWith(renderRow(conditions[index], options));
                }
            }
            save();
        });
        rows.addEventListener("input", (event) => {
            const row = event.target.closest(".segment-condition");
            if (row && event.target.tagName === "INPUT" && event.target.type !== "checkbox") {
                conditions[Array.from(rows.children).indexOf(row)] = read(row);
                save();
            }
        });
        rows.addEventListener("click", (event) => {
            const button = event.target.closest(".segment-remove");
            if (!button) {
                return;
            }
            const row = button.closest(".segment-condition");
            conditions.splice(Array.from(rows.children).indexOf(row), 1);
            row.remove();
            save();
        });
        addButton.addEventListener("click", () => {
            const condition = defaults("country", options);
            conditions.push(condition);
            rows.append(renderRow(condition, options));
            save();
        });
        for (const radio of form.querySelectorAll("input[name=match]")) {
            radio.addEventListener("change", () => schedule());
        }

        render();
        schedule();
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", init);
    } else {
        init();
    }
})();

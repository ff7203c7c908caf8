/* The campaign composer's live panel (templates/admin/campaigns/campaign/_composer.html).
   As the marketer types, it asks the compose endpoint what the message becomes
   (characters, encoding, segments, the sample contact's text, audience, cost) and
   updates the panel the server rendered on page load. Vanilla JS, no build step. */
"use strict";
(function () {
    const DEBOUNCE_MS = 200;
    const NETWORK_ERROR =
        "The preview could not be updated (connection problem). Your text is kept; keep typing to try again.";
    const SESSION_EXPIRED = "Your session has expired: log in again (your text is still here).";
    const REPLACE_MOVING =
        "The text kept changing while it was being converted; click the button again.";

    // The endpoint answered with something other than the panel's JSON: the
    // session ended (the admin redirects to its login page) or the CSRF token
    // went stale with it.
    class SessionExpired extends Error {}

    function formatNumber(value) {
        return Number(value).toLocaleString("en-US");
    }

    // Left out of the audience: "−12", or "0".
    function formatExcluded(value) {
        return value ? `−${formatNumber(value)}` : "0";
    }

    function byId(id) {
        return document.getElementById(id);
    }

    function setText(id, text) {
        const element = byId(id);
        if (element) {
            element.textContent = text;
        }
    }

    // Text with the given characters wrapped in <mark>, built from text nodes so
    // that nothing typed is ever parsed as HTML.
    function fillHighlighted(element, text, marked) {
        element.replaceChildren();
        let plain = "";
        for (const char of text) {
            if (marked.has(char)) {
                if (plain) {
                    element.append(plain);
                    plain = "";
                }
                const mark = document.createElement("mark");
                mark.className = "composer-char";
                mark.textContent = char;
                element.append(mark);
            } else {
                plain += char;
            }
        }
        if (plain) {
            element.append(plain);
        }
    }

    function init() {
        const panel = byId("composer");
        if (!panel || panel.dataset.live !== "true") {
            return;
        }
        const form = panel.closest("form");
        const body = byId("id_body");
        const footer = byId("id_opt_out_footer");
        const provider = byId("id_provider");
        const frequencyCap = byId("id_frequency_cap");
        const trackLinks = byId("id_track_links");
        const sampleSelect = byId("composer-sample-select");
        const dataScript = byId("composer-data");
        if (!form || !body || !dataScript) {
            return;
        }
        const csrfInput = form.querySelector("[name=csrfmiddlewaretoken]");
        const url = panel.dataset.composeUrl;
        let state = JSON.parse(dataScript.textContent);
        let timer = null;
        // One request at a time: counting a large audience can take a while, and
        // the answer to the latest text is the only one that matters.
        let inFlight = false;
        let again = false;
        let lastSent = null;
        // The request (params().toString()) that `state` answers; null: unknown.
        let stateKey = null;
        let replacing = false;
        // Where the cursor was in the body when it lost focus; null: never focused.
        let bodySelection = null;

        panel.classList.add("composer--live");

        function chosenIds(name) {
            // filter_horizontal: the chosen box (its options can be hidden by the
            // filter, so read SelectBox's cache when there is one).
            const chosen = byId(`id_${name}_to`);
            if (chosen) {
                const cache = window.SelectBox && window.SelectBox.cache[`id_${name}_to`];
                const options = cache || Array.from(chosen.options);
                return options.map((option) => option.value);
            }
            const select = byId(`id_${name}`);
            if (select && select.options) {
                return Array.from(select.selectedOptions, (option) => option.value);
            }
            return Array.from(
                form.querySelectorAll(`input[name=${name}]:checked`),
                (input) => input.value,
            );
        }

        function params() {
            const data = new URLSearchParams();
            data.set("body", body.value);
            data.set("opt_out_footer", footer ? footer.value : "");
            if (provider) {
                data.set("provider", provider.value);
            }
            if (trackLinks) {
                data.set("track_links", trackLinks.checked ? "true" : "false");
            }
            data.set("variants", JSON.stringify(typedVariants()));
            for (const name of ["lists", "segments"]) {
                for (const id of chosenIds(name).sort()) {
                    data.append(name, id);
                }
            }
            if (frequencyCap) {
                data.set("frequency_cap", frequencyCap.value);
            }
            if (sampleSelect && sampleSelect.value) {
                data.set("sample", sampleSelect.value);
            }
            return data;
        }

        // The text variants inline's rows as typed (B, C, D), skipping the empty
        // template row, deleted rows and rows without text.
        function typedVariants() {
            const rows = [];
            const bodies = form.querySelectorAll("textarea[name^='variants-'][name$='-body']");
            for (const variantBody of bodies) {
                const prefix = variantBody.name.slice(0, -"body".length);
                const remove = form.querySelector(`[name='${prefix}DELETE']`);
                if (prefix.includes("__prefix__") || (remove && remove.checked)) {
                    continue;
                }
                if (!variantBody.value.trim()) {
                    continue;
                }
                const share = form.querySelector(`[name='${prefix}share']`);
                rows.push({ body: variantBody.value, share: Number(share && share.value) || 0 });
            }
            return rows;
        }

        function schedule(delay) {
            clearTimeout(timer);
            panel.dataset.pending = "true";
            timer = setTimeout(
                () => {
                    timer = null;
                    refresh();
                },
                delay === undefined ? DEBOUNCE_MS : delay,
            );
        }

        function settle() {
            if (!inFlight && timer === null) {
                delete panel.dataset.pending;
            }
        }

        // The panel's figures for `data`: {ok, status, answer}. Throws
        // SessionExpired, or a TypeError when the network fails.
        async function ask(data) {
            const response = await fetch(url, {
                method: "POST",
                body: data,
                credentials: "same-origin",
                headers: {
                    "X-CSRFToken": csrfInput ? csrfInput.value : "",
                    "X-Requested-With": "XMLHttpRequest",
                },
            });
            const type = response.headers.get("Content-Type") || "";
            const json = type.startsWith("application/json");
            if (
                response.redirected ||
                response.type === "opaqueredirect" ||
                response.status === 302 ||
                response.status === 403 ||
                (response.ok && !json)
            ) {
                throw new SessionExpired();
            }
            const answer = json ? await response.json().catch(() => ({})) : {};
            return { ok: response.ok, status: response.status, answer };
        }

        function failureText(error) {
            return error instanceof SessionExpired ? SESSION_EXPIRED : NETWORK_ERROR;
        }

        async function refresh() {
            if (inFlight) {
                again = true;
                return;
            }
            const data = params();
            const key = data.toString();
            if (key === lastSent) {
                settle();
                return;
            }
            lastSent = key;
            inFlight = true;
            panel.setAttribute("aria-busy", "true");
            try {
                const { ok, status, answer } = await ask(data);
                if (ok) {
                    state = answer;
                    stateKey = key;
                    render(state);
                } else {
                    // Ask again on the next change, even if it is back to this text.
                    lastSent = null;
                    showError(answer.error || `The preview could not be updated (error ${status}).`);
                }
            } catch (error) {
                lastSent = null;
                showError(failureText(error));
            } finally {
                inFlight = false;
                panel.removeAttribute("aria-busy");
                if (again) {
                    again = false;
                    refresh();
                } else {
                    settle();
                }
            }
        }

        function showError(text) {
            const element = byId("composer-error");
            element.textContent = text;
            element.hidden = !text;
        }

        function render(data) {
            showError("");
            const message = data.message;
            setText("composer-characters", formatNumber(message.characters));
            const encoding = byId("composer-encoding");
            encoding.textContent = message.encoding_label;
            encoding.classList.toggle("composer-encoding--ucs2", message.encoding === "ucs2");
            setText("composer-segments", formatNumber(message.segments));
            setText("composer-segments-word", message.segments === 1 ? "segment" : "segments");
            setText("composer-remaining", formatNumber(message.remaining));
            setText("composer-per-segment", formatNumber(message.per_segment));

            renderCharacters(data);
            renderProblems(data.problems);
            renderVariants(data.variants || []);
            const links = byId("composer-links");
            if (links && data.links) {
                links.textContent = data.links.text;
                links.hidden = !data.links.text;
            }
            renderPlaceholders(data.placeholders);
            renderSamples(data);
            const marked = new Set(data.ucs2_characters.map((row) => row.character));
            fillHighlighted(byId("composer-sample-text"), message.text, marked);
            renderAudience(data);
            panel.dataset.updates = String(Number(panel.dataset.updates || 0) + 1);
        }

        function renderVariants(variants) {
            const table = byId("composer-variants");
            if (!table) {
                return;
            }
            const body = table.tBodies[0];
            body.replaceChildren();
            for (const variant of variants) {
                const row = body.insertRow();
                row.dataset.variant = variant.label;
                const head = document.createElement("th");
                head.scope = "row";
                head.textContent = variant.label;
                row.append(head);
                const cells = [
                    `${variant.share} %`,
                    formatNumber(variant.characters),
                    formatNumber(variant.segments),
                    variant.encoding_label,
                    variant.text,
                ];
                cells.forEach((text, index) => {
                    const cell = row.insertCell();
                    cell.textContent = text;
                    if (index === cells.length - 1) {
                        cell.className = "composer-variant-text";
                    }
                });
            }
            table.hidden = variants.length === 0;
        }

        function renderCharacters(data) {
            const block = byId("composer-ucs2");
            const list = byId("composer-ucs2-chars");
            list.replaceChildren();
            for (const row of data.ucs2_characters) {
                const item = document.createElement("li");
                item.dataset.character = row.character;
                const mark = document.createElement("mark");
                mark.className = "composer-char";
                mark.title = row.code;
                mark.textContent = row.character;
                const name = document.createElement("span");
                name.className = "composer-quiet";
                name.textContent = row.name;
                item.append(mark, " ", name, ` ×${row.count} → `);
                if (row.replacement === null) {
                    item.append("no GSM equivalent");
                } else if (row.replacement === "") {
                    item.append("removed");
                } else {
                    const code = document.createElement("code");
                    code.textContent = row.replacement;
                    item.append(code);
                }
                if (row.in_contact) {
                    const where = document.createElement("span");
                    where.className = "composer-quiet";
                    where.textContent = "(in this contact's details)";
                    item.append(" ", where);
                }
                list.append(item);
            }
            block.hidden = data.ucs2_characters.length === 0;
            const button = byId("composer-replace-gsm");
            if (button) {
                button.hidden = !data.gsm.changes;
                button.disabled = replacing;
            }
        }

        function renderProblems(problems) {
            const list = byId("composer-problems");
            list.replaceChildren(
                ...problems.map((problem) => {
                    const item = document.createElement("li");
                    item.textContent = problem;
                    return item;
                }),
            );
        }

        function renderPlaceholders(names) {
            const container = byId("composer-placeholders");
            const current = Array.from(container.children, (button) => button.dataset.placeholder);
            if (current.join("\n") === names.join("\n")) {
                return; // keep the buttons (and keyboard focus) as they are
            }
            container.replaceChildren(
                ...names.map((name) => {
                    const button = document.createElement("button");
                    button.type = "button";
                    button.className = "composer-chip";
                    button.dataset.placeholder = name;
                    button.title = `Insert {${name}} at the cursor`;
                    button.textContent = `{${name}}`;
                    return button;
                }),
            );
        }

        function renderSamples(data) {
            if (!sampleSelect) {
                return;
            }
            const wanted = data.samples.map((sample) => `${sample.id}\t${sample.label}`);
            const current = Array.from(sampleSelect.options, (option) => `${option.value}\t${option.textContent}`);
            if (wanted.join("\n") !== current.join("\n") || data.samples.length === 0) {
                sampleSelect.replaceChildren(
                    ...data.samples.map((sample) => new Option(sample.label, String(sample.id))),
                );
                if (data.samples.length === 0) {
                    const label = data.contacts_hidden
                        ? "Placeholder defaults (contacts are not shown to you)"
                        : "No contacts: placeholder defaults";
                    sampleSelect.append(new Option(label, ""));
                }
            }
            sampleSelect.disabled = data.samples.length === 0;
            if (data.sample !== null) {
                sampleSelect.value = String(data.sample);
            }
        }

        // Element id, key in data.audience, is an exclusion (as AUDIENCE_ROWS in
        // admin_composer.py).
        const AUDIENCE_ROWS = [
            ["composer-in-lists", "in_lists", false],
            ["composer-in-segments", "in_segments", false],
            ["composer-duplicates", "duplicates", true],
            ["composer-opted-out", "opted_out", true],
            ["composer-suppressed", "suppressed", true],
            ["composer-frequency-cap", "frequency_capped", true],
            ["composer-recipients", "recipients", false],
            ["composer-uncertain-zones", "uncertain_zones", false],
        ];

        function renderAudience(data) {
            const audience = data.audience;
            const cost = data.cost;
            for (const [id, key, exclusion] of AUDIENCE_ROWS) {
                let text = "…";
                if (audience) {
                    text = exclusion ? formatExcluded(audience[key]) : formatNumber(audience[key]);
                }
                setText(id, text);
            }
            setText("composer-cost", cost ? cost.text : "…");
            let basis = data.audience_pending ? "Counting the audience…" : "";
            if (cost && audience) {
                const perMessage = String(cost.segments_per_message);
                basis =
                    `${cost.price_text} per segment × ${perMessage} ` +
                    `segment${perMessage === "1" ? "" : "s"} per message × ` +
                    `${formatNumber(audience.recipients)} recipients` +
                    (cost.exact ? "." : ", segments averaged over a sample of the audience.");
            }
            setText("composer-cost-basis", basis);
            const noLists = byId("composer-no-lists");
            if (noLists) {
                noLists.hidden = data.lists_chosen;
            }
        }

        function insertPlaceholder(name) {
            const token = `{${name}}`;
            const end = body.value.length;
            const [start, stop] = bodySelection || [end, end];
            body.focus();
            body.setSelectionRange(start, stop);
            // execCommand keeps the insertion in the browser's undo history.
            const inserted = document.execCommand && document.execCommand("insertText", false, token);
            if (!inserted || body.value.slice(start, start + token.length) !== token) {
                body.setRangeText(token, start, stop, "end");
                body.dispatchEvent(new Event("input", { bubbles: true }));
            }
        }

        // Replace the field's whole text as if typed, so Ctrl+Z brings it back.
        function replaceText(field, text) {
            if (field.value === text) {
                return;
            }
            field.focus();
            field.select();
            const command = text ? "insertText" : "delete";
            const done = document.execCommand && document.execCommand(command, false, text);
            if (!done || field.value !== text) {
                field.value = text;
                field.dispatchEvent(new Event("input", { bubbles: true }));
            }
        }

        // The GSM-safe version of the text as it is now: the panel's answer when it
        // is about exactly this text, else a fresh one (asked again if the text
        // changes meanwhile), so nothing typed since is lost.
        async function replaceWithGsm(button) {
            if (replacing) {
                return;
            }
            replacing = true;
            button.disabled = true;
            try {
                for (let attempt = 0; attempt < 3; attempt += 1) {
                    const data = params();
                    const key = data.toString();
                    let gsm = key === stateKey ? state.gsm : null;
                    if (gsm === null) {
                        const { ok, status, answer } = await ask(data);
                        if (!ok) {
                            showError(answer.error || `The text could not be converted (error ${status}).`);
                            return;
                        }
                        gsm = answer.gsm;
                    }
                    if (params().toString() !== key) {
                        continue; // typed meanwhile: convert the newer text
                    }
                    if (footer) {
                        replaceText(footer, gsm.opt_out_footer);
                    }
                    replaceText(body, gsm.body);
                    schedule(0);
                    return;
                }
                showError(REPLACE_MOVING);
            } catch (error) {
                showError(failureText(error));
            } finally {
                replacing = false;
                button.disabled = false;
            }
        }

        body.addEventListener("input", () => schedule());
        body.addEventListener("blur", () => {
            bodySelection = [body.selectionStart, body.selectionEnd];
        });
        if (footer) {
            footer.addEventListener("input", () => schedule());
        }
        if (provider) {
            provider.addEventListener("change", () => schedule());
        }
        if (trackLinks) {
            trackLinks.addEventListener("change", () => schedule());
        }
        // The variants inline: typing, shares, deleting and adding rows.
        form.addEventListener("input", (event) => {
            if (event.target.name && event.target.name.startsWith("variants-")) {
                schedule();
            }
        });
        form.addEventListener("change", (event) => {
            if (event.target.name && event.target.name.startsWith("variants-")) {
                schedule();
            }
        });
        if (sampleSelect) {
            sampleSelect.addEventListener("change", () => schedule(0));
        }
        if (frequencyCap) {
            frequencyCap.addEventListener("input", () => schedule());
        }
        for (const name of ["lists", "segments"]) {
            const row = form.querySelector(`.field-${name}`) || byId(`id_${name}`);
            if (!row) {
                continue;
            }
            row.addEventListener("change", () => schedule());
            row.addEventListener("click", () => schedule());
            // Moving items between the two boxes of filter_horizontal rebuilds the
            // chosen box's options; refresh() skips calls that change nothing.
            new MutationObserver(() => schedule()).observe(row, {
                childList: true,
                subtree: true,
            });
        }
        panel.addEventListener("click", (event) => {
            const chip = event.target.closest("[data-placeholder]");
            if (chip && panel.contains(chip)) {
                event.preventDefault();
                insertPlaceholder(chip.dataset.placeholder);
            } else if (event.target.closest("#composer-replace-gsm")) {
                event.preventDefault();
                replaceWithGsm(event.target.closest("#composer-replace-gsm"));
            }
        });

        // The page shows what the server rendered; only a browser that restored
        // different text (back button) or a large audience still to count needs a
        // request right away.
        lastSent = params().toString();
        const restored =
            body.value !== body.defaultValue || (footer && footer.value !== footer.defaultValue);
        if (restored || state.audience_pending) {
            lastSent = null;
            schedule(0);
        } else {
            stateKey = lastSent;
        }
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", init);
    } else {
        init();
    }
})();

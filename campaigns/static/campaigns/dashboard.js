/* Refreshes the campaign page's progress panel (#dashboard) in place.
 *
 * While the panel says data-live="true" (the campaign can still change), it fetches
 * <progress url>?format=html every 10 seconds and swaps the new panel in; the new
 * panel's data-live decides whether to go on. A panel with data-stale="true" (the
 * page showed old figures rather than wait for a count) is refreshed at once. The
 * "refresh" link asks for figures counted afresh. Nothing runs on pages without
 * #dashboard.
 *
 * Each panel carries the page's state outside it (<template id="dashboard-page">:
 * title, status, action buttons). When a refresh brings a different one (the campaign
 * started, completed, was paused elsewhere), the page's title and buttons are
 * updated in place; the form is left alone. */
(function () {
    "use strict";

    const INTERVAL_MS = 10000;
    let timer = null;

    function panel() {
        return document.getElementById("dashboard");
    }

    function pageState(root) {
        const holder = root && root.querySelector("#dashboard-page");
        if (!holder) {
            return null;
        }
        return {
            title: holder.dataset.title,
            status: holder.dataset.status,
            statusDisplay: holder.dataset.statusDisplay,
            actions: holder.dataset.actions,
            buttons: holder.content,
        };
    }

    let shown = null;  // the state the page shows now

    function syncPage(next) {
        if (!next || !shown) {
            return;
        }
        if (next.title !== shown.title) {
            const heading = document.querySelector("#content h1");
            if (heading) {
                heading.textContent = next.title;
            }
            document.title = document.title.replace(shown.title, next.title);
        }
        const status = document.getElementById("campaign-status");
        if (status && next.status !== shown.status) {
            status.textContent = next.statusDisplay;
            status.className = "campaign-status campaign-status-" + next.status;
        }
        if (next.actions !== shown.actions) {
            const tools = document.querySelector(".object-tools");
            if (tools) {
                tools.querySelectorAll("li").forEach(function (item) {
                    if (item.querySelector("a[id^='action-']")) {
                        item.remove();
                    }
                });
                const buttons = next.buttons.cloneNode(true);
                tools.insertBefore(buttons, tools.firstChild);
            }
        }
        shown = next;
    }

    function schedule() {
        window.clearTimeout(timer);
        const current = panel();
        if (current && current.dataset.live === "true") {
            timer = window.setTimeout(function () { refresh(false); }, INTERVAL_MS);
        }
    }

    function refresh(fresh) {
        const current = panel();
        if (!current || !current.dataset.progressUrl) {
            return;
        }
        if (document.hidden && !fresh) {
            schedule();  // try again later; a hidden tab needs no figures
            return;
        }
        const url = current.dataset.progressUrl + "?format=html" + (fresh ? "&fresh=1" : "");
        current.classList.add("dashboard-loading");
        fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "XMLHttpRequest"}})
            .then(function (response) {
                if (!response.ok) {
                    throw new Error("HTTP " + response.status);
                }
                return response.text();
            })
            .then(function (html) {
                const holder = document.createElement("template");
                holder.innerHTML = html.trim();
                const next = holder.content.getElementById("dashboard");
                if (next) {
                    panel().replaceWith(next);
                    syncPage(pageState(next));
                }
            })
            .catch(function () {
                // Keep the figures shown; the next round tries again.
                const shown = panel();
                if (shown) {
                    shown.classList.remove("dashboard-loading");
                }
            })
            .finally(schedule);
    }

    document.addEventListener("click", function (event) {
        const link = event.target.closest ? event.target.closest("#dashboard-refresh") : null;
        if (link) {
            event.preventDefault();
            refresh(true);
        }
    });

    document.addEventListener("DOMContentLoaded", function () {
        const current = panel();
        shown = pageState(current);
        if (current && current.dataset.stale === "true") {
            refresh(false);
        } else {
            schedule();
        }
    });
})();

"use strict";
// The schedule page (templates/admin/campaigns/campaign/action_schedule.html):
// preselect the browser's time zone when the page allows it (a new schedule, not a
// change of an existing one, whose date and time are shown in the zone they were
// picked in).
(function () {
  const select = document.getElementById("id_time_zone");
  if (!select || select.dataset.browserDefault !== "true") {
    return;
  }
  let zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    return;
  }
  if (Array.from(select.options).some((option) => option.value === zone)) {
    select.value = zone;
  }
})();

// Live progress of running jobs: polls each job's JSON endpoint and reloads the page when a job ends.
'use strict';
(function() {
    const INTERVAL = 1000;

    function describe(data) {
        let text = data.status.charAt(0).toUpperCase() + data.status.slice(1);
        if (data.table) {
            text += ': ' + data.phase + ' ' + data.table + ' ' + data.done.toLocaleString();
            if (data.total) {
                text += ' of ' + data.total.toLocaleString() + ' rows';
            }
        }
        if (data.message) {
            text += ' (' + data.message + ')';
        }
        return text;
    }

    function watch(element) {
        const url = element.dataset.jobProgress;
        const bar = element.querySelector('progress');
        const label = element.querySelector('.adcp-progress-text');
        function poll() {
            fetch(url, {credentials: 'same-origin', headers: {'Accept': 'application/json'}})
                .then(function(response) {
                    if (!response.ok) {
                        throw new Error(response.status);
                    }
                    return response.json();
                })
                .then(function(data) {
                    if (data.total) {
                        bar.max = data.total;
                        bar.value = data.done;
                    } else {
                        bar.removeAttribute('value');
                    }
                    label.textContent = describe(data);
                    if (data.finished) {
                        if (element.dataset.reload) {
                            window.location.reload();
                        }
                        return;
                    }
                    window.setTimeout(poll, INTERVAL);
                })
                .catch(function() {
                    window.setTimeout(poll, INTERVAL * 5);
                });
        }
        window.setTimeout(poll, INTERVAL);
    }

    document.addEventListener('DOMContentLoaded', function() {
        document.querySelectorAll('[data-job-progress]').forEach(watch);
    });
})();

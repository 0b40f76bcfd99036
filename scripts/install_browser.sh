#!/bin/sh
# Install what the browser test (tests/test_tour.py) needs on a fresh
# machine: Chromium (from the distribution's packages) and the Python
# websocket-client (from PyPI).  Idempotent: anything already present is
# left alone.  It never fails the build: if an install does not work it says
# why, and the tour test then skips itself with the reason.
#
#   scripts/install_browser.sh            # uses sudo for apt-get when not root

PYTHON="${PYTHON:-python3}"

have_chrome() {
    for bin in google-chrome chromium chromium-browser google-chrome-stable; do
        command -v "$bin" >/dev/null 2>&1 && return 0
    done
    return 1
}

if have_chrome; then
    echo "install_browser: a Chromium/Chrome is already installed."
else
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install_browser: no apt-get here; install Chromium by hand (the tour test will skip)." >&2
    else
        echo "install_browser: installing chromium with apt-get..."
        export DEBIAN_FRONTEND=noninteractive
        # Debian ships "chromium"; Ubuntu's "chromium-browser" is a snap shim, tried second.
        if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium; } \
           && ! $SUDO apt-get install -y -qq chromium-browser; then
            echo "install_browser: apt-get could not install chromium (no root, no network or no package); the tour test will skip." >&2
        fi
    fi
    have_chrome && echo "install_browser: $(command -v chromium || command -v chromium-browser || command -v google-chrome) installed."
fi

if "$PYTHON" -c "import websocket" >/dev/null 2>&1; then
    echo "install_browser: websocket-client is already importable by $PYTHON."
else
    echo "install_browser: installing websocket-client with pip..."
    if ! "$PYTHON" -m pip install --quiet websocket-client; then
        # PEP 668 environments refuse plain installs; a CI machine is disposable.
        "$PYTHON" -m pip install --quiet --break-system-packages websocket-client \
            || echo "install_browser: pip could not install websocket-client; the tour test will skip." >&2
    fi
fi
exit 0

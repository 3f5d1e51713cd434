"""Real headless Chromium (Debian ``chromium`` + ``chromium-driver``) driven by Selenium, and test artifacts."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import REPO_ROOT

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
_T = TypeVar("_T")


@contextmanager
def headless_chromium(profile_dir: Path, width: int = 1440, height: int = 1000) -> Iterator[WebDriver]:
    """A fresh browser profile each time; audio may play without a click and goes nowhere."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is missing: install the Debian packages chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile_dir}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver: WebDriver, condition: Callable[[WebDriver], _T], what: str, timeout_s: float = 60.0) -> _T:
    """Live fragments replace their elements whenever an update arrives, so a stale element means "look again"."""
    return WebDriverWait(
        driver,
        timeout_s,
        poll_frequency=0.1,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(condition, f"timed out waiting for {what}")


def click(driver: WebDriver, selector: str, what: str) -> None:
    """Click an element that a live update may replace at any moment."""

    def clicked(d: WebDriver) -> bool:
        d.find_element(By.CSS_SELECTOR, selector).click()
        return True

    wait_until(driver, clicked, f"{what} to be clickable")


def full_page_screenshot(driver: WebDriver, name: str) -> Path:
    """Saves the whole page (not just the window) under tests/artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width = driver.get_window_size()["width"]
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, max(height + 120, 800))  # + the window chrome headless still reserves
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path

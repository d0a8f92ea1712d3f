;;; dape.el --- minimal stand-in for dape, for tests only  -*- lexical-binding: t; -*-
;;; Commentary:
;; NOT dape: just the variable and the function names kbridge-dape.el refers to, so the
;; file can be loaded and its entries inspected on an Emacs without dape (dape needs
;; Emacs >= 29.1; Debian bookworm has 28.2).
;;; Code:
(defvar dape-configs nil)
(defun dape-ensure-command (_config) t)
(defun dape-command-cwd () default-directory)
(defun dape-cwd () default-directory)
(defun dape-buffer-default () (buffer-file-name))
(provide 'dape)
;;; dape.el ends here

;;; eglot.el --- minimal stand-in for eglot, for tests only  -*- lexical-binding: t; -*-
;;; Commentary:
;; NOT eglot: just the variable kbridge-eglot.el adds to, so the file can be loaded and its
;; entries inspected on an Emacs without eglot (built in from Emacs 29.1; Debian bookworm
;; has 28.2).
;;; Code:
(defvar eglot-server-programs nil)
(provide 'eglot)
;;; eglot.el ends here

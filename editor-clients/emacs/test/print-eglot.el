;;; print-eglot.el --- print kbridge's eglot setup as JSON  -*- lexical-binding: t; -*-
;;; Commentary:
;; Loads kbridge-eglot.el against the eglot stand-in and prints one JSON object: for each
;; sample file name, the major mode `auto-mode-alist' picks and the server command
;; `eglot-server-programs' gives that mode (nil when none).
;;; Code:
(require 'json)
(require 'kbridge-eglot)

(defun kbridge-test--mode-for (file)
  "The major mode Emacs would choose for FILE."
  (assoc-default file auto-mode-alist #'string-match))

(defun kbridge-test--server-for (mode)
  "The command `eglot-server-programs' has for MODE."
  (let (found)
    (dolist (entry eglot-server-programs)
      (let ((modes (if (listp (car entry)) (car entry) (list (car entry)))))
        (when (and (not found) (memq mode modes))
          (setq found (cdr entry)))))
    found))

(let (out)
  (dolist (file '("/w/api/KubernetesLocalProcessConfig.yaml" "/w/api/azds-local.env"
                  "/w/.vscode/launch.json" "/w/other.yaml" "/w/package.json"))
    (let ((mode (kbridge-test--mode-for file)))
      (push (cons file `((mode . ,(and mode (symbol-name mode)))
                         (derived . ,(and mode (fboundp mode)
                                          (with-temp-buffer (funcall mode) (symbol-name major-mode))))
                         (server . ,(and mode (vconcat (kbridge-test--server-for mode))))))
            out)))
  (princ (json-encode (nreverse out)))
  (terpri))
;;; print-eglot.el ends here
